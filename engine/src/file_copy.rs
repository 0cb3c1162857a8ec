//! Local file copies for the folder target: in the kernel where it can (`copy_file_range`: the
//! bytes never pass through user space, which on a VM costs several times a read), with each
//! step's writeback to disk started at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)` queues the
//! writes and returns), so that the `fsync` that makes a file durable finds little left to do:
//! the disk works while the next bytes arrive instead of all at the end. Writeback is a hint
//! only; durability still comes from `fsync`.

use std::fs::File;
use std::io::{self, Write};

/// Bytes read back at once to be hashed: each slice is a buffer of its own that the shared
/// hasher holds until hashed, so they stay small.
pub(crate) const SLICE: usize = 256 << 10;

/// Bytes copied (or written) before their writeback is started.
const STEP: u64 = 8 << 20;

/// Copies `len` bytes of `from` starting at `from_at` into `to` at `to_at`, in the kernel.
/// Returns how many were copied (fewer when `from` ended first), or `None` when the kernel
/// cannot copy between these two files (nothing was copied; copy through user space instead).
#[cfg(target_os = "linux")]
pub(crate) fn copy_range(
    from: &File,
    mut from_at: u64,
    to: &File,
    mut to_at: u64,
    len: u64,
) -> io::Result<Option<u64>> {
    use rustix::io::Errno;
    let mut done = 0;
    while done < len {
        let want = (len - done).min(STEP) as usize;
        let n =
            match rustix::fs::copy_file_range(from, Some(&mut from_at), to, Some(&mut to_at), want)
            {
                Ok(0) => break,
                Ok(n) => n as u64,
                // Another file system, or one (or a kernel) that cannot.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL | Errno::PERM)
                    if done == 0 =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e.into()),
            };
        start_writeback(to, to_at - n, n);
        done += n;
    }
    Ok(Some(done))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn copy_range(_: &File, _: u64, _: &File, _: u64, _: u64) -> io::Result<Option<u64>> {
    Ok(None)
}

/// Reads `len` bytes of `file` from `at` a [`SLICE`] at a time, handing each to `each` (to hash
/// them; each is its own buffer, which the hasher thread may keep for a while); a file that
/// ends first fails with [`io::ErrorKind::UnexpectedEof`].
pub(crate) fn read_range(
    file: &File,
    at: u64,
    len: u64,
    mut each: impl FnMut(bytes::Bytes),
) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let want = SLICE.min((len - done) as usize);
        each(read_exact_at(file, at + done, want)?);
        done += want as u64;
    }
    Ok(())
}

/// Reads `len` bytes of `file` from `at` into a buffer of their own (read into its spare
/// capacity: not zeroed first); a file that ends first fails with
/// [`io::ErrorKind::UnexpectedEof`].
pub(crate) fn read_exact_at(file: &File, at: u64, len: usize) -> io::Result<bytes::Bytes> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let from = at + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), from) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len); // (in case the allocator gave more room than asked for)
    Ok(buf.into())
}

/// Starts writing `len` bytes of `file` from `at` to disk, without waiting.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an open descriptor this `File` owns; no memory is passed.
    let _ =
        unsafe { libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_file: &File, _at: u64, _len: u64) {}

/// A file written from its start, each [`STEP`] bytes of it sent to disk as they are written.
pub(crate) struct EarlyWriteback<'a> {
    file: &'a File,
    written: u64,
    started: u64,
}

impl<'a> EarlyWriteback<'a> {
    pub(crate) fn new(file: &'a File) -> Self {
        EarlyWriteback {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl Write for EarlyWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = (&mut &*self.file).write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= STEP {
            start_writeback(self.file, self.started, self.written - self.started);
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_writeback_writes_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::create(&path).unwrap();
        let data: Vec<u8> = (0..3 * STEP as usize + 77)
            .map(|i| (i % 253) as u8)
            .collect();
        let mut out = EarlyWriteback::new(&file);
        for piece in data.chunks(300_000) {
            out.write_all(piece).unwrap();
        }
        file.sync_all().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
