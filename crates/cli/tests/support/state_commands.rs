//! `coordinator state` as an operator types it: schema migrations shown
//! and applied on an ephemeral PostgreSQL, and a federation's state moved
//! from sled to PostgreSQL and back to a fresh sled with nothing lost.
//! Under CI=true a missing PostgreSQL fails this test.

use exchange_testkit::servers::{required, EphemeralPostgres};

use super::{fails, ok, run};

/// An export file's entries, without the header (which names the engine).
fn entries(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_moves_between_sled_and_postgresql_with_the_coordinator_command() {
    let Some(pg) = required("PostgreSQL", EphemeralPostgres::start()) else {
        return;
    };
    let url = pg.create_database("state_cli").await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let dir = |name: &str| work.path().join(name).display().to_string();

    let shown = ok(&run(
        "coordinator",
        &["--state", &url, "state", "migrate", "--dry-run"],
    ));
    assert!(
        shown.contains("would apply") && shown.contains("CREATE TABLE exchange_state"),
        "{shown}"
    );
    assert!(
        !shown.contains("postgres@"),
        "the user is shown with the password hidden: {shown}"
    );
    let applied = ok(&run("coordinator", &["--state", &url, "state", "migrate"]));
    assert!(
        applied.contains("applied:\n  1: exchange_state"),
        "{applied}"
    );
    let again = ok(&run("coordinator", &["--state", &url, "state", "migrate"]));
    assert!(again.contains("nothing to do"), "{again}");

    // A federation's state on sled (members and their certificate serials).
    let sled = dir("sled");
    ok(&run(
        "coordinator",
        &["--data-dir", &sled, "dev-pki", "--out", &dir("certs")],
    ));
    let export = work.path().join("state.jsonl");
    let said = ok(&run(
        "coordinator",
        &[
            "--data-dir",
            &sled,
            "state",
            "export",
            "--out",
            &export.display().to_string(),
        ],
    ));
    assert!(
        said.contains("from sled") && said.contains("members 9"),
        "{said}"
    );

    let from = export.display().to_string();
    let said = ok(&run(
        "coordinator",
        &["--state", &url, "state", "import", "--from", &from],
    ));
    assert!(
        said.contains("into postgres") && said.contains("members 9"),
        "{said}"
    );
    let refused = fails(&run(
        "coordinator",
        &["--state", &url, "state", "import", "--from", &from],
    ));
    assert!(refused.contains("already holds data"), "{refused}");

    // And back, to a fresh sled store: the same entries.
    let pg_export = work.path().join("from-pg.jsonl");
    ok(&run(
        "coordinator",
        &[
            "--state",
            &url,
            "state",
            "export",
            "--out",
            &pg_export.display().to_string(),
        ],
    ));
    assert_eq!(entries(&pg_export), entries(&export));
    let fresh = dir("fresh");
    ok(&run(
        "coordinator",
        &[
            "--data-dir",
            &fresh,
            "state",
            "import",
            "--from",
            &pg_export.display().to_string(),
        ],
    ));
    let round = work.path().join("round.jsonl");
    ok(&run(
        "coordinator",
        &[
            "--data-dir",
            &fresh,
            "state",
            "export",
            "--out",
            &round.display().to_string(),
        ],
    ));
    assert_eq!(entries(&round), entries(&export));

    let bad = fails(&run(
        "coordinator",
        &["--state", "mysql://x", "state", "migrate"],
    ));
    assert!(
        bad.contains("state must be \"sled\" or a PostgreSQL URL"),
        "{bad}"
    );
}
