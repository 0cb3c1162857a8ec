//! The `indexmap` text file (docs/FORMAT.md §3.1): an uppercase-hex MD5 of every byte after the first
//! 32, a version, `prepare/commit` checkpoints, `maxAutoMergeLevel` (v2) and `level,pos,guid` lines.

use std::io;

use crate::hashing::md5;

pub const FILE_NAME: &str = "indexmap";

/// One PTable referenced by the indexmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub level: u32,
    pub position: u32,
    pub file: String,
}

/// A parsed indexmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexMap {
    pub version: u32,
    pub prepare_checkpoint: i64,
    pub commit_checkpoint: i64,
    pub max_auto_merge_level: Option<i32>,
    pub tables: Vec<TableRef>,
}

impl IndexMap {
    /// Parses and checks the MD5; accepts `\n` or `\r\n` line ends.
    pub fn parse(bytes: &[u8]) -> io::Result<IndexMap> {
        if bytes.len() < 32 {
            return Err(invalid("indexmap is shorter than its 32-character MD5"));
        }
        let stored =
            std::str::from_utf8(&bytes[..32]).map_err(|_| invalid("indexmap MD5 is not text"))?;
        let computed = hex::encode_upper(md5(&bytes[32..]));
        if !stored.eq_ignore_ascii_case(&computed) {
            return Err(invalid("indexmap MD5 does not match its content"));
        }
        let text =
            std::str::from_utf8(&bytes[32..]).map_err(|_| invalid("indexmap is not UTF-8"))?;
        let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
        let version: u32 = parse_field(lines.next(), "version")?;
        let (prepare, commit) = lines
            .next()
            .and_then(|l| l.split_once('/'))
            .ok_or_else(|| invalid("indexmap lacks its prepare/commit line"))?;
        let prepare_checkpoint = parse_field(Some(prepare), "prepare checkpoint")?;
        let commit_checkpoint = parse_field(Some(commit), "commit checkpoint")?;
        let max_auto_merge_level = if version >= 2 {
            Some(parse_field(lines.next(), "maxAutoMergeLevel")?)
        } else {
            None
        };
        let mut tables = Vec::new();
        for line in lines {
            let mut parts = line.splitn(3, ',');
            let level = parse_field(parts.next(), "table level")?;
            let position = parse_field(parts.next(), "table position")?;
            let file = parts
                .next()
                .ok_or_else(|| invalid("indexmap table line lacks a file name"))?;
            if !super::guid::is_guid_name(file) {
                return Err(invalid("indexmap names a table that is not a GUID"));
            }
            tables.push(TableRef {
                level,
                position,
                file: file.to_string(),
            });
        }
        Ok(IndexMap {
            version,
            prepare_checkpoint,
            commit_checkpoint,
            max_auto_merge_level,
            tables,
        })
    }

    /// Encodes with `\n` line ends (Linux) and the MD5 filled in, as the server writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = format!(
            "\n{}\n{}/{}\n",
            self.version, self.prepare_checkpoint, self.commit_checkpoint
        );
        if let Some(level) = self.max_auto_merge_level {
            body.push_str(&format!("{level}\n"));
        }
        for t in &self.tables {
            body.push_str(&format!("{},{},{}\n", t.level, t.position, t.file));
        }
        let mut out = hex::encode_upper(md5(body.as_bytes())).into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

fn parse_field<T: std::str::FromStr>(s: Option<&str>, what: &str) -> io::Result<T> {
    s.and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| invalid(&format!("indexmap has a bad or missing {what}")))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_md_example_hash() {
        let map = IndexMap {
            version: 2,
            prepare_checkpoint: 1234567,
            commit_checkpoint: 1234567,
            max_auto_merge_level: Some(2147483647),
            tables: vec![
                TableRef {
                    level: 0,
                    position: 0,
                    file: "5a1a8395-94ee-40c1-bf93-aa757b5887f8".into(),
                },
                TableRef {
                    level: 1,
                    position: 0,
                    file: "0d8b5c6e-2f1e-4e0f-9a57-6b1d7f0c9e21".into(),
                },
            ],
        };
        let bytes = map.encode();
        assert!(bytes.starts_with(b"4BADB92C88C37B4FFE42D93A8AC6E358\n2\n"));
        assert_eq!(IndexMap::parse(&bytes).unwrap(), map);
    }

    #[test]
    fn rejects_tampering() {
        let map = IndexMap {
            version: 2,
            prepare_checkpoint: -1,
            commit_checkpoint: -1,
            max_auto_merge_level: Some(2147483647),
            tables: vec![],
        };
        let mut bytes = map.encode();
        *bytes.last_mut().unwrap() = b' ';
        assert!(IndexMap::parse(&bytes).is_err());
    }
}
