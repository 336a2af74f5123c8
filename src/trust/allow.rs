//! Whom an endpoint's `accept()` lets in when it does not know the peer in advance: the allow
//! policy, asked inside the handshake with the peer's node ID (see `verifier`).

use std::collections::HashSet;
use std::fmt;

use super::NodeIdScheme;

/// Decides whether a verified peer may have a session, by its node ID (normalised by the
/// local scheme). Runs inside the handshake, on whichever thread drives it, once per peer
/// certificate.
pub trait AllowPolicy: Send + Sync + fmt::Debug {
    /// `Ok(true)` lets the peer in, `Ok(false)` refuses it, `Err(why)` refuses it because the
    /// policy itself failed (an application callable raised; `why` says so).
    fn allows(&self, node_id: &str) -> Result<bool, String>;
}

/// A fixed set of node IDs, each normalised by the scheme's `parse`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowList(HashSet<String>);

impl AllowList {
    /// The node IDs in `ids`, each checked and normalised with `scheme.parse`; the error names
    /// the first that is not a node ID of that scheme. An empty list refuses every peer.
    pub fn parse<'a>(ids: impl IntoIterator<Item = &'a str>, scheme: &dyn NodeIdScheme) -> Result<Self, String> {
        ids.into_iter()
            .map(|id| scheme.parse(id).map_err(|why| format!("allow: {why}")))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// How many node IDs it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it refuses everyone.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<String> for AllowList {
    /// Node IDs already normalised by the scheme's `parse`.
    fn from_iter<I: IntoIterator<Item = String>>(ids: I) -> Self {
        Self(ids.into_iter().collect())
    }
}

impl fmt::Debug for AllowList {
    // Thousands of IDs would drown whatever prints the pin; the count says enough.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AllowList({} node IDs)", self.0.len())
    }
}

impl AllowPolicy for AllowList {
    fn allows(&self, node_id: &str) -> Result<bool, String> {
        Ok(self.0.contains(node_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{Libp2p, Sha256};

    const ID: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn ids_are_normalised_by_the_scheme_and_looked_up_exactly() {
        let list = AllowList::parse([ID.to_ascii_uppercase().as_str()], &Sha256).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list.allows(ID), Ok(true));
        assert_eq!(list.allows(&ID.replace('0', "1")), Ok(false));
    }

    #[test]
    fn a_malformed_id_is_named_in_the_error() {
        let err = AllowList::parse([ID, "not-a-node-id"], &Sha256).unwrap_err();
        assert!(err.starts_with("allow: "), "{err}");
        assert!(err.contains("\"not-a-node-id\""), "{err}");
        // Another scheme's spelling is refused too: IDs are checked with the local scheme.
        assert!(AllowList::parse([ID], &Libp2p).is_err());
    }

    #[test]
    fn an_empty_list_refuses_everyone() {
        let list = AllowList::parse([], &Sha256).unwrap();
        assert!(list.is_empty());
        assert_eq!(list.allows(ID), Ok(false));
        assert_eq!(format!("{list:?}"), "AllowList(0 node IDs)");
    }
}
