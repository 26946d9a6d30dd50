//! The on-disk envelope of DryCI's own cache files under `.dryci/`: a magic
//! tag, a format version and a blake3 checksum around a postcard body,
//! replaced atomically. A file that is missing, foreign, from another format
//! version, truncated or corrupt is never trusted: the caller starts afresh.

use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub struct Envelope {
    pub magic: &'static [u8; 8],
    /// Bumped whenever the body's format or meaning changes.
    pub version: u32,
}

const HEADER_LEN: usize = 8 + 4 + 32;

impl Envelope {
    pub fn encode<T: Serialize>(&self, value: &T) -> std::io::Result<Vec<u8>> {
        let body = postcard::to_stdvec(value).map_err(std::io::Error::other)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(self.magic);
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.extend_from_slice(blake3::hash(&body).as_bytes());
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, String> {
        decode_body(self.verified_body(bytes)?)
    }

    /// The postcard body of `bytes`, once its tag, version and checksum are checked.
    fn verified_body<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != self.magic {
            return Err("not a DryCI cache file of this kind".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| "truncated header")?);
        if version != self.version {
            return Err(format!("format {version}, expected {}", self.version));
        }
        let (checksum, body) = bytes[12..].split_at(32);
        if blake3::hash(body).as_bytes() != checksum {
            return Err("checksum mismatch (truncated or corrupt)".into());
        }
        Ok(body)
    }

    /// The value stored at `path`: `Ok(None)` when there is no file, `Err`
    /// (a message naming the file) when it cannot be used.
    pub fn load<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>, String> {
        self.load_body(path)?
            .map(|body| {
                decode_body(body.bytes())
                    .map_err(|reason| format!("{}: {reason}; starting afresh", path.display()))
            })
            .transpose()
    }

    /// The checked body stored at `path`, for a caller that decodes it in
    /// parts (`postcard::take_from_bytes`), some only when needed.
    pub fn load_body(&self, path: &Path) -> Result<Option<Body>, String> {
        let afresh = |reason: String| format!("{}: {reason}; starting afresh", path.display());
        match std::fs::read(path) {
            Ok(bytes) => {
                self.verified_body(&bytes).map_err(afresh)?;
                Ok(Some(Body { bytes }))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(afresh(err.to_string())),
        }
    }

    pub fn save<T: Serialize>(&self, path: &Path, value: &T) -> std::io::Result<()> {
        write_atomically(path, &self.encode(value)?)
    }
}

/// A cache file's body whose envelope was checked: postcard bytes.
#[derive(Default)]
pub struct Body {
    /// The whole file; the body starts after the header.
    bytes: Vec<u8>,
}

impl Body {
    pub fn bytes(&self) -> &[u8] {
        self.bytes.get(HEADER_LEN..).unwrap_or_default()
    }
}

/// Its size, not its megabytes of bytes.
impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Body({} bytes)", self.bytes().len())
    }
}

pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|err| format!("cannot decode: {err}"))
}

/// Writes to a temporary file in the same folder, then renames it into place,
/// so a reader never sees half a file. There is no fsync: after a power loss
/// the file may be empty or torn, which the checksum catches (the cache then
/// starts afresh), and syncing three cache files cost more than the rest of a
/// re-run.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Unique per process and per call, so concurrent writers never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let sequence = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.{}.{sequence}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Envelope = Envelope {
        magic: b"DRYCItt\0",
        version: 3,
    };

    #[test]
    fn round_trip_and_every_kind_of_bad_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.bin");
        assert_eq!(TEST.load::<Vec<u32>>(&path), Ok(None));
        TEST.save(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(TEST.load::<Vec<u32>>(&path), Ok(Some(vec![1, 2, 3])));

        let good = std::fs::read(&path).unwrap();
        let mut corrupt = good.clone();
        *corrupt.last_mut().unwrap() ^= 0xff;
        assert!(TEST
            .decode::<Vec<u32>>(&corrupt)
            .unwrap_err()
            .contains("checksum"));
        assert!(TEST.decode::<Vec<u32>>(&good[..20]).is_err());
        let other_version = Envelope {
            magic: TEST.magic,
            version: 4,
        };
        assert!(other_version
            .decode::<Vec<u32>>(&good)
            .unwrap_err()
            .contains("format 3, expected 4"));
        let other_kind = Envelope {
            magic: b"DRYCIxx\0",
            version: 3,
        };
        assert!(other_kind.decode::<Vec<u32>>(&good).is_err());
        std::fs::write(&path, &corrupt).unwrap();
        let err = TEST.load::<Vec<u32>>(&path).unwrap_err();
        assert!(
            err.contains("x.bin") && err.contains("starting afresh"),
            "{err}"
        );
    }
}
