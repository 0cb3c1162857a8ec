//! Local file copies for the folder target: in the kernel where it can (`copy_file_range`: the
//! bytes never pass through user space, which on a VM costs several times a read), with each
//! step's writeback to disk started at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)` queues the
//! writes and returns), so that the `fsync` that makes a file durable finds little left to do:
//! the disk works while the next bytes arrive instead of all at the end. Writeback is a hint
//! only; durability still comes from `fsync`.

use std::fs::File;
use std::io::{self, Write};

/// Bytes [`read_range`] reads at once.
const SLICE: usize = 256 << 10;

/// Bytes [`read_back`] maps at once.
const WINDOW: usize = 1 << 20;

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

/// [`copy_range`], then each copied [`STEP`] read back at once ([`read_back`]) and handed to
/// `each` (to hash the bytes that landed): the read-back of one step, while its pages are
/// fresh, overlaps the hasher's work with the copy of the next instead of waiting for the whole
/// file. Returns how many bytes were copied and read back, or `None` as [`copy_range`] does.
pub(crate) fn copy_and_read_back(
    from: &File,
    from_at: u64,
    to: &File,
    to_at: u64,
    len: u64,
    mut each: impl FnMut(bytes::Bytes),
) -> io::Result<Option<u64>> {
    let mut done = 0;
    while done < len {
        let want = (len - done).min(STEP);
        let n = match copy_range(from, from_at + done, to, to_at + done, want)? {
            None if done == 0 => return Ok(None),
            None => return Err(io::Error::other("the kernel stopped copying midway")),
            Some(n) => n,
        };
        read_back(to, to_at + done, n, &mut each)?;
        done += n;
        if n < want {
            break; // `from` ended
        }
    }
    Ok(Some(done))
}

/// Reads `len` bytes of `file` from `at` a [`SLICE`] at a time into one buffer, handing each
/// slice to `each`; a file that ends first fails with [`io::ErrorKind::UnexpectedEof`]. For
/// files others may change (the database's); [`read_back`] reads this process's own.
pub(crate) fn read_range(
    file: &File,
    at: u64,
    len: u64,
    mut each: impl FnMut(&[u8]),
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; SLICE.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let want = SLICE.min((len - done) as usize);
        file.read_exact_at(&mut buf[..want], at + done)?;
        each(&buf[..want]);
        done += want as u64;
    }
    Ok(())
}

/// Hands `len` bytes of `file` from `at` to `each`, a [`WINDOW`] at a time, mapped from the
/// page cache (no copy, no fresh buffer to fault in and zero; each window unmapped when the
/// last holder drops it). Only for a file this process wrote and still holds, which nobody
/// truncates: a mapping of bytes a file no longer has would kill the process (`SIGBUS`). A
/// file that ends first fails with [`io::ErrorKind::UnexpectedEof`].
pub(crate) fn read_back(
    file: &File,
    at: u64,
    len: u64,
    mut each: impl FnMut(bytes::Bytes),
) -> io::Result<()> {
    let size = file.metadata()?.len();
    if at.checked_add(len).is_none_or(|end| end > size) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut done = 0u64;
    while done < len {
        let want = WINDOW.min((len - done) as usize);
        // SAFETY: the bytes exist (checked above) and stay: the caller wrote the file and holds
        // it, and nothing in this process shortens it.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(at + done)
                .len(want)
                .populate()
                .map(file)?
        };
        each(bytes::Bytes::from_owner(map));
        done += want as u64;
    }
    Ok(())
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

    /// Every copied byte is read back in order (across steps, from and to offsets), and only
    /// what the copy wrote; a source that ends early yields what it had.
    #[test]
    fn copy_and_read_back_hands_over_exactly_the_copied_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * STEP as usize + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(dir.path().join("from"), &data).unwrap();
        let from = File::open(dir.path().join("from")).unwrap();
        let to = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("to"))
            .unwrap();
        to.set_len(100).unwrap(); // bytes before the copy's offset are not read back
        let mut seen = Vec::new();
        let copied = copy_and_read_back(&from, 5, &to, 100, data.len() as u64 - 5, |piece| {
            seen.extend_from_slice(&piece)
        })
        .unwrap();
        // Where the kernel cannot copy between these files, nothing was read back.
        let Some(n) = copied else {
            assert!(seen.is_empty());
            return;
        };
        assert_eq!(n, data.len() as u64 - 5);
        assert_eq!(seen, data[5..]);
        assert_eq!(
            std::fs::read(dir.path().join("to")).unwrap()[100..],
            data[5..]
        );

        seen.clear();
        let short = copy_and_read_back(&from, 0, &to, 0, data.len() as u64 + 10, |piece| {
            seen.extend_from_slice(&piece)
        })
        .unwrap();
        assert_eq!(short, Some(data.len() as u64));
        assert_eq!(seen, data);
    }

    #[test]
    fn read_back_refuses_bytes_the_file_does_not_have() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), [1u8; 10]).unwrap();
        let file = File::open(dir.path().join("f")).unwrap();
        let mut seen = Vec::new();
        read_back(&file, 2, 8, |p| seen.extend_from_slice(&p)).unwrap();
        assert_eq!(seen, [1u8; 8]);
        let e = read_back(&file, 3, 8, |_| panic!("nothing to hand over")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        read_back(&file, 10, 0, |_| panic!("nothing to hand over")).unwrap();
    }
}
