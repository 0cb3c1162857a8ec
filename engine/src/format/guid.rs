//! GUIDs as .NET writes them: first three fields little-endian, the last 8 bytes as is.

use uuid::Uuid;

/// Reads a GUID stored in .NET byte order.
pub fn from_dotnet_bytes(bytes: &[u8; 16]) -> Uuid {
    Uuid::from_bytes_le(*bytes)
}

/// Writes a GUID in .NET byte order.
pub fn to_dotnet_bytes(id: &Uuid) -> [u8; 16] {
    id.to_bytes_le()
}

/// True when `name` is a lowercase `D`-format GUID, the name of a PTable file.
pub fn is_guid_name(name: &str) -> bool {
    name.len() == 36
        && Uuid::parse_str(name).is_ok()
        && !name.bytes().any(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotnet_order_matches_format_md_example() {
        let id = Uuid::parse_str("5a1a8395-94ee-40c1-bf93-aa757b5887f8").unwrap();
        let expected = [
            0x95, 0x83, 0x1a, 0x5a, 0xee, 0x94, 0xc1, 0x40, 0xbf, 0x93, 0xaa, 0x75, 0x7b, 0x58,
            0x87, 0xf8,
        ];
        assert_eq!(to_dotnet_bytes(&id), expected);
        assert_eq!(from_dotnet_bytes(&expected), id);
    }

    #[test]
    fn guid_names() {
        assert!(is_guid_name("5a1a8395-94ee-40c1-bf93-aa757b5887f8"));
        assert!(!is_guid_name("5A1A8395-94EE-40C1-BF93-AA757B5887F8"));
        assert!(!is_guid_name("indexmap"));
        assert!(!is_guid_name(
            "5a1a8395-94ee-40c1-bf93-aa757b5887f8.bloomfilter"
        ));
    }
}
