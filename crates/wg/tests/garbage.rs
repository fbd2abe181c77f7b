//! No input makes the WireGuard parser, planner or endpoint parser panic.
use proptest::prelude::*;
use rampart_types::{FileId, Span};

const PIECES: &[&str] = &[
    "[[wireguard]]\n",
    "[[wireguard.member]]\n",
    "[[client]]\n",
    "[[node]]\n",
    "name = \"a\"\n",
    "name = \"b\"\n",
    "interface = \"wg0\"\n",
    "pool = [\"10.0.0.0/30\"]\n",
    "pool = [\"fd00::/127\"]\n",
    "pool = []\n",
    "listen_port = 51820\n",
    "listen_port = -1\n",
    "topology = \"hub\"\n",
    "topology = \"partial\"\n",
    "gateways = [\"a\"]\n",
    "groups = { g = [\"a\", \"b\"] }\n",
    "network = \"n\"\n",
    "via = [\"a\"]\n",
    "public_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
    "address = [\"10.0.0.1\"]\n",
    "routes = [\"0.0.0.0/0\"]\n",
    "endpoint = \"[::1]:1\"\n",
    "mtu = 1280\n",
    "guest = 100\n",
    "persistent_keepalive = 99999\n",
    "table = 42\n",
    "= = =\n",
    "\"\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn structured_garbage_never_panics(picks in prop::collection::vec(0..PIECES.len(), 0..30)) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        let _ = rampart_wg::check(FileId(0), &text);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let _ = rampart_wg::check(FileId(0), &text);
        let _ = rampart_wg::schema::Endpoint::parse(&text, Span::default());
        let _ = rampart_wg::PublicKey::parse(&text);
    }
}
