//! The first frame each way: who is connecting, to which cluster.
//!
//! ```text
//! hello / hello-accepted body:  node_id u32 LE | name_length u16 LE | cluster_name (UTF-8)
//! ```
//!
//! The accepting side checks the cluster name; a mismatch is answered with an error frame
//! naming both names, and the connection closes. Decoding checks every length against what
//! remains and never panics.

use bytes::{BufMut, Bytes, BytesMut};
use iotdb_consensus::io::NodeId;

use super::error::InternalError;
use super::limits::CLUSTER_NAME_BYTES_MAX;

/// A node's identity on the internal protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub node_id: NodeId,
    pub cluster_name: String,
}

impl Hello {
    pub fn encode(&self) -> Bytes {
        let name = self.cluster_name.as_bytes();
        assert!(
            name.len() <= CLUSTER_NAME_BYTES_MAX,
            "checked at construction"
        );
        let mut out = BytesMut::with_capacity(6 + name.len());
        out.put_u32_le(self.node_id.0);
        out.put_u16_le(name.len() as u16);
        out.put_slice(name);
        out.freeze()
    }

    pub fn decode(body: &[u8]) -> Result<Hello, InternalError> {
        let malformed = |reason: String| InternalError::Malformed {
            what: "hello",
            reason,
        };
        if body.len() < 6 {
            return Err(malformed(format!(
                "{} bytes, at least 6 needed",
                body.len()
            )));
        }
        let node_id = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let name_length = usize::from(u16::from_le_bytes([body[4], body[5]]));
        if name_length > CLUSTER_NAME_BYTES_MAX || body.len() != 6 + name_length {
            return Err(malformed(format!(
                "cluster name of {name_length} bytes in a body of {}",
                body.len()
            )));
        }
        let cluster_name = std::str::from_utf8(&body[6..])
            .map_err(|_| malformed("cluster name is not UTF-8".into()))?
            .to_owned();
        Ok(Hello {
            node_id: NodeId(node_id),
            cluster_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrips_and_rejects_bad_lengths() {
        let hello = Hello {
            node_id: NodeId(7),
            cluster_name: "defaultCluster".into(),
        };
        let body = hello.encode();
        assert_eq!(Hello::decode(&body).unwrap(), hello);
        for cut in 0..body.len() {
            assert!(Hello::decode(&body[..cut]).is_err());
        }
        let mut long = body.to_vec();
        long.push(b'x');
        assert!(Hello::decode(&long).is_err());
    }
}
