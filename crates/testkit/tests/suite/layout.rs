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

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What only the mailbox seam (`crates/providers`) may say: the OAuth providers' account
/// types and identity providers as branches, the provider kinds, the protocol clients, and a
/// `match` on an account's type.
const PROVIDER_BRANCHING: &[&str] = &[
    "AccountType::GoogleOauth",
    "AccountType::Outlook",
    "IdP::Google",
    "IdP::Microsoft",
    "Provider::",
    ".idp()",
    "oauth::",
    "GmailClient",
    "GraphClient",
    "imap_smtp",
    "http_api",
    "providers::gmail",
    "providers::graph",
];

fn branches_on_provider(line: &str) -> Option<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    if let Some(t) = PROVIDER_BRANCHING.iter().find(|t| code.contains(*t)) {
        return Some(t);
    }
    // `match account.account_type {`, `match a.account_type`, `match t {` on a type…
    let m = code.find("match ")?;
    code[m..]
        .split('{')
        .next()
        .filter(|head| head.contains("account_type"))
        .map(|_| "match on account_type")
}

#[test]
fn no_provider_branching_outside_the_seam() {
    let crates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for room in ["api", "engine"] {
        rust_files(&crates_dir.join(room).join("src"), &mut files);
    }
    assert!(files.len() > 20, "the sources were found");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if let Some(what) = branches_on_provider(line) {
                found.push(format!("{}:{}: {what}", file.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "provider branching outside crates/providers (grow the Mailbox seam instead):\n{}",
        found.join("\n")
    );
    // The check itself works.
    assert_eq!(
        branches_on_provider("    match account.account_type {"),
        Some("match on account_type")
    );
    assert_eq!(
        branches_on_provider("let c = GmailClient::new(http, base);"),
        Some("GmailClient")
    );
    assert_eq!(branches_on_provider("// IdP::Google in a comment"), None);
    assert_eq!(branches_on_provider("let m = engine.mailboxes();"), None);
}
