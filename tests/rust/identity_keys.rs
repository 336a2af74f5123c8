//! Guards issue 9: node keys of every supported type authenticate over P-256 DTLS, the node
//! key is pinned inside the handshake under each scheme, and a certificate that claims a node
//! key it cannot prove (copied CN, foreign or garbage libp2p extension) is refused for good.

use std::sync::Arc;

use dtls_peer::identity::{libp2p_extension, self_signed};
use dtls_peer::trust::libp2p::{self, SignedKey};
use dtls_peer::trust::{certificate_node_key, inspect_peer_certificate, CertificateProblem, PublicNodeKey};
use dtls_peer::{
    Config, Engine, Event, HandshakeFailure, Identity, KeyType, Libp2p, NodeIdScheme, Role, Sha256, VerificationFailure,
};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

use crate::common::{failure, Pair};

/// libp2p/specs tls/tls.md, "Test vectors" (r0, 2019-03-23):
/// <https://github.com/libp2p/specs/blob/master/tls/tls.md#test-vectors>.
const SPEC_VECTORS: [(&str, Option<&str>); 4] = [
    // 1. Valid certificate authenticating an ED25519 Peer ID.
    ("308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77",
     Some("12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv")),
    // 2. Valid certificate authenticating an ECDSA Peer ID.
    ("308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a",
     Some("QmfXbAwNjJLXfesgztEHe8HwgVDCMMpZ9Eax1HYq6hn9uE")),
    // 3. Valid certificate authenticating a secp256k1 Peer ID.
    ("308201ba3082015fa0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea38184308181307f060a2b0601040183a25a01010471306f0425080212210206dc6968726765b820f050263ececf7f71e4955892776c0970542efd689d2382044630440220145e15a991961f0d08cd15425bb95ec93f6ffa03c5a385eedc34ecf464c7a8ab022026b3109b8a3f40ef833169777eb2aa337cfb6282f188de0666d1bcec2a4690dd300a06082a8648ce3d0403020349003046022100e1a217eeef9ec9204b3f774a08b70849646b6a1e6b8b27f93dc00ed58545d9fe022100b00dafa549d0f03547878338c7b15e7502888f6d45db387e5ae6b5d46899cef0",
     Some("16Uiu2HAkutTMoTzDw1tCvSRtu6YoixJwS46S1ZFxW8hSx9fWHiPs")),
    // 4. Invalid certificate: the peer ID it claims does not match the key that signed it.
    ("308201f73082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f204473045022100bb6e03577b7cc7a3cd1558df0da2b117dfdcc0399bc2504ebe7de6f65cade72802206de96e2a5be9b6202adba24ee0362e490641ac45c240db71fe955f2c5cf8df6e300a06082a8648ce3d0403020348003045022100e847f267f43717358f850355bdcabbefb2cfbf8a3c043b203a14788a092fe8db022027c1d04a2d41fd6b57a7e8b3989e470325de4406e52e084e34a3fd56eef0d0df",
     None),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn libp2p_spec_test_vectors() {
    for (cert, peer_id) in SPEC_VECTORS {
        let der = hex(cert);
        match peer_id {
            Some(want) => {
                // As a DTLS peer's certificate (self-signature and extension both checked)...
                let key = inspect_peer_certificate(&der).unwrap();
                assert_eq!(Libp2p.node_id(&key).unwrap(), want);
                // ...and as `node_id_from_certificate` reads any certificate.
                assert_eq!(Libp2p.node_id(&certificate_node_key(&der).unwrap()).unwrap(), want);
                // The ID typed by a user parses.
                assert_eq!(Libp2p.parse(want).unwrap(), want);
            }
            None => {
                let r = inspect_peer_certificate(&der);
                assert!(matches!(r, Err(CertificateProblem::InvalidExtension(_))), "{r:?}");
                assert!(certificate_node_key(&der).is_err());
            }
        }
    }
}

#[test]
fn libp2p_peer_id_of_a_known_ed25519_key() {
    // The Ed25519 key inside spec vector 1's extension, and the peer ID the spec gives for it.
    let raw = hex("a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b9");
    let key = PublicNodeKey::from_libp2p_data(KeyType::Ed25519, &raw).unwrap();
    assert_eq!(
        Libp2p.node_id(&key).unwrap(),
        "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
    );
    // The same key loaded from its DER SPKI, as the SHA-256 scheme and callables see it.
    let from_spki = PublicNodeKey::from_spki_der(key.spki_der()).unwrap();
    assert_eq!(Libp2p.node_id(&from_spki).unwrap(), Libp2p.node_id(&key).unwrap());
}

/// DPC Messenger's scheme, as an application would supply it: "dpc-node-" + the first 32 hex
/// characters of the SHA-256 of the PEM public key.
struct DpcScheme;

impl NodeIdScheme for DpcScheme {
    fn name(&self) -> &str {
        "dpc"
    }

    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String> {
        let pem = PKey::public_key_from_der(key.spki_der())
            .and_then(|k| k.public_key_to_pem())
            .map_err(|e| e.to_string())?;
        let hex: String = openssl::sha::sha256(&pem).iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("dpc-node-{}", &hex[..32]))
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

fn schemes() -> [Arc<dyn NodeIdScheme>; 3] {
    [Arc::new(Sha256), Arc::new(Libp2p), Arc::new(DpcScheme)]
}

#[test]
fn every_pair_of_key_types_connects_under_every_scheme() {
    for scheme in schemes() {
        let ids: Vec<Identity> = (KeyType::ALL.iter())
            .map(|t| Identity::generate_with(*t, scheme.clone()).unwrap())
            .collect();
        for client_id in &ids {
            for server_id in &ids {
                let what = format!(
                    "{} -> {} ({})",
                    client_id.key_type(),
                    server_id.key_type(),
                    scheme.name()
                );
                let mut p = Pair::with_identities(
                    client_id.clone(),
                    server_id.clone(),
                    Config::default(),
                    Config::default(),
                );
                assert!(p.handshake(), "{what}: {:?} {:?}", p.client_events, p.server_events);
                assert!(p.client.cipher().unwrap().starts_with("ECDHE-ECDSA-"), "{what}");
                assert_eq!(p.client.peer_node_id(), Some(server_id.node_id()), "{what}");
                assert_eq!(p.server.peer_node_id(), Some(client_id.node_id()), "{what}");
                assert_eq!(p.client.peer_public_key(), Some(server_id.public_key_der()), "{what}");
                assert_eq!(p.server.peer_public_key(), Some(client_id.public_key_der()), "{what}");
                p.client.send(b"to server").unwrap();
                p.server.send(b"to client").unwrap();
                p.collect();
                p.flush();
                assert_eq!(Pair::messages(&p.server_events), [b"to server".to_vec()], "{what}");
                assert_eq!(Pair::messages(&p.client_events), [b"to client".to_vec()], "{what}");
            }
        }
    }
}

fn p256_key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
}

/// An identity presenting a P-256 certificate with subject CN `cn` and, if given, a libp2p
/// extension holding `extension` (the crafted certificate is its own DTLS certificate).
fn forger(cn: &str, extension: Option<&[u8]>) -> Identity {
    let key = p256_key();
    let extension = extension.map(|value| libp2p_extension(value).unwrap());
    let cert = self_signed(&key, cn, extension.as_ref()).unwrap();
    let key_pem = key.private_key_to_pem_pkcs8().unwrap();
    Identity::from_pem(&cert.to_pem().unwrap(), &key_pem).unwrap()
}

/// `victim` (any scheme) pins `impostor`'s claimed identity `pinned`; returns the client's
/// (victim's) failure and the server's (if it settled), after the link drained.
fn victim_meets(
    victim: Identity,
    impostor: Identity,
    pinned: &str,
) -> (HandshakeFailure, Option<HandshakeFailure>, Pair) {
    let client = Engine::new(Role::Client, &victim, Some(pinned.to_owned()), Config::default()).unwrap();
    let server = Engine::new(Role::Server, &impostor, None, Config::default()).unwrap();
    let mut p = Pair::from_engines(client, server, victim, impostor);
    assert!(!p.handshake());
    p.flush();
    let client = failure(&p.client_events).cloned().expect("the victim refuses");
    let server = failure(&p.server_events).cloned();
    (client, server, p)
}

#[test]
fn a_copied_common_name_is_not_the_node_key() {
    for scheme in schemes() {
        let real = Identity::generate_with(KeyType::Ed25519, scheme.clone()).unwrap();
        let victim = Identity::generate_with(KeyType::Rsa, scheme.clone()).unwrap();
        // The impostor's certificate says it is `real` in its CN, with its own key.
        let impostor = forger(real.node_id(), None);
        let (client, server, p) = victim_meets(victim, impostor, real.node_id());
        assert!(
            matches!(&client, HandshakeFailure::PeerVerification(VerificationFailure::NodeIdMismatch { expected, .. })
                if expected == real.node_id()),
            "{}: {client:?}",
            scheme.name()
        );
        assert_eq!(server, Some(HandshakeFailure::AlertReceived(48)));
        assert_eq!(p.client.stats().handshake_attempts, 1);
        assert!(!p.client_events.contains(&Event::Connected));
    }
}

#[test]
fn wrong_node_key_is_refused() {
    let scheme: Arc<dyn NodeIdScheme> = Arc::new(Libp2p);
    let pinned = Identity::generate_with(KeyType::Secp256k1, scheme.clone()).unwrap();
    let other = Identity::generate_with(KeyType::Secp256k1, scheme.clone()).unwrap();
    let victim = Identity::generate_with(KeyType::Ed25519, scheme).unwrap();
    let (client, server, _) = victim_meets(victim, other.clone(), pinned.node_id());
    assert_eq!(
        client,
        HandshakeFailure::PeerVerification(VerificationFailure::NodeIdMismatch {
            expected: pinned.node_id().to_owned(),
            actual: other.node_id().to_owned(),
        })
    );
    assert_eq!(server, Some(HandshakeFailure::AlertReceived(48)));
}

#[test]
fn an_extension_the_node_key_did_not_sign_is_refused_for_good() {
    let real = Identity::generate_with(KeyType::Ed25519, Arc::new(Libp2p)).unwrap();
    let thief = PKey::generate_ed25519().unwrap();
    let signed_by_thief = |cert_spki: &[u8]| {
        let mut signer = Signer::new_without_digest(&thief).unwrap();
        signer.sign_oneshot_to_vec(&libp2p::signed_message(cert_spki)).unwrap()
    };
    // The certificate key is only known once it is made: sign over an arbitrary key, which is
    // just as wrong for the node key as a signature by another key.
    let claimed = SignedKey {
        public_key: libp2p::encode_public_key(real.public_key()).unwrap(),
        signature: signed_by_thief(&p256_key().public_key_to_der().unwrap()),
    };
    let garbage = b"\x30\x06\x04\x01\x08\x04\x01\x00".to_vec();
    for value in [claimed.to_der().unwrap(), garbage, Vec::new()] {
        let victim = Identity::generate_with(KeyType::Rsa, Arc::new(Libp2p)).unwrap();
        let (client, server, p) = victim_meets(victim, forger("x", Some(&value)), real.node_id());
        assert!(
            matches!(
                &client,
                HandshakeFailure::PeerVerification(VerificationFailure::Certificate(
                    CertificateProblem::InvalidExtension(_)
                ))
            ),
            "{value:?}: {client:?}"
        );
        // unsupported_certificate: "not you", final on both sides.
        assert_eq!(server, Some(HandshakeFailure::AlertReceived(43)));
        assert_eq!(p.client.stats().handshake_attempts, 1);
        assert_eq!(p.server.stats().handshake_attempts, 1);
    }
}

/// A scheme that names only the keys it was told about and fails on any other.
struct Refusing(Vec<u8>);

impl NodeIdScheme for Refusing {
    fn name(&self) -> &str {
        "refusing"
    }

    fn node_id(&self, key: &PublicNodeKey) -> Result<String, String> {
        if key.spki_der() == self.0 {
            Ok("me".into())
        } else {
            Err("node_id_scheme raised RuntimeError: unknown key".into())
        }
    }

    fn parse(&self, text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

#[test]
fn a_failing_scheme_fails_that_handshake_only() {
    let key = PKey::generate_ed25519().unwrap();
    let spki = PublicNodeKey::from_key(&key).unwrap().spki_der().to_vec();
    let key_pem = key.private_key_to_pem_pkcs8().unwrap();
    let victim = Identity::from_pem_with(None, &key_pem, Arc::new(Refusing(spki))).unwrap();
    let peer = Identity::generate_with(KeyType::P256, Arc::new(Sha256)).unwrap();
    // The peer gets internal_error (80), which it may retry: the fault is not its identity.
    let (client, _, p) = victim_meets(victim, peer, "anyone");
    assert_eq!(
        client,
        HandshakeFailure::PeerVerification(VerificationFailure::Scheme(
            "node_id_scheme raised RuntimeError: unknown key".into()
        ))
    );
    assert_eq!(p.client.stats().handshake_attempts, 1, "a scheme's error is not noise");
}
