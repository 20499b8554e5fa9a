//! The contract is in the repository: `docs/API.md` is the copy a clone reads,
//! and it must stay the same as the binding `../shared/API.md` wherever that
//! file exists (CI has it; a bare clone does not, and then there is nothing to
//! compare with).

use std::path::Path;

#[test]
fn docs_api_md_matches_the_shared_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = std::fs::read_to_string(root.join("docs/API.md"))
        .expect("docs/API.md is missing: copy ../shared/API.md there");
    assert!(
        copy.contains("## ") && copy.len() > 1000,
        "docs/API.md does not look like the API contract"
    );
    let shared_path = root.join("../shared/API.md");
    let Ok(shared) = std::fs::read_to_string(&shared_path) else {
        println!(
            "note: {} is absent; docs/API.md not compared",
            shared_path.display()
        );
        return;
    };
    assert!(
        copy == shared,
        "docs/API.md differs from {}: copy the shared contract over it",
        shared_path.display()
    );
}
