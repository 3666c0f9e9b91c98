//! DESIGN §2: data flows one way through the crates. A crate may only depend on the crates of
//! its row; this test reads every crate's `[dependencies]` and fails on any other edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let all = [
        "core",
        "mime",
        "store",
        "providers",
        "engine",
        "api",
        "server",
    ];
    BTreeMap::from([
        ("core", BTreeSet::new()),
        ("mime", BTreeSet::from(["core"])),
        ("store", BTreeSet::from(["core"])),
        ("providers", BTreeSet::from(["core", "mime"])),
        (
            "engine",
            BTreeSet::from(["core", "mime", "store", "providers"]),
        ),
        ("api", BTreeSet::from(["core", "store", "engine"])),
        (
            "server",
            BTreeSet::from_iter(all.into_iter().filter(|c| *c != "server")),
        ),
        ("testkit", BTreeSet::from_iter(all)),
    ])
}

/// The `mailroom-*` crates named in the `[dependencies]` table of a manifest.
fn internal_deps(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some(rest) = line.strip_prefix("mailroom-") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn crates_depend_only_downstream() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let allowed = allowed();
    let mut seen = 0;
    for (name, ok) in &allowed {
        let manifest = std::fs::read_to_string(crates_dir.join(name).join("Cargo.toml")).unwrap();
        let deps = internal_deps(&manifest);
        for d in &deps {
            assert!(
                ok.contains(d.as_str()),
                "crates/{name} depends on mailroom-{d}, which DESIGN §2 does not allow"
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 8);
    // The parser itself works: the engine does use the store.
    let engine = std::fs::read_to_string(crates_dir.join("engine/Cargo.toml")).unwrap();
    assert!(internal_deps(&engine).contains("store"));
}
