//! The contract suite on every backend: memory, local disk, SeaweedFS (auth enforced) and
//! moto. Each prints `contract[<backend>]: N passed, M failed`.

use futures::TryStreamExt;
use maskstore_backends::{Error, Storage, WriteOptions};
use maskstore_testkit::contract::{self, Capabilities, Report};
use maskstore_testkit::servers::{self, S3Server};

/// At least this many cases must pass on every backend.
const MIN_CASES: usize = 60;

fn assert_clean(report: &Report) {
    println!("{report}");
    assert!(report.failed.is_empty(), "{report}");
    assert!(report.passed.len() >= MIN_CASES, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_memory() {
    let storage = maskstore_testkit::memory_served().await;
    assert_clean(&contract::run(&storage).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_local() {
    let storage = maskstore_testkit::temp_dir_served().await;
    assert_clean(&contract::run(&storage).await);
}

async fn contract_s3(server: S3Server) {
    let capabilities = Capabilities {
        verifies_signatures: server.verifies_signatures,
    };
    let report = contract::run_with(&server.storage(), capabilities)
        .await
        .labelled(server.name);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_s3_seaweedfs() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    contract_s3(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_s3_moto() {
    let Some(server) = servers::moto() else {
        return;
    };
    contract_s3(server).await;
}

/// The auth-sensitive check moto cannot do: with a wrong secret, every operation on
/// SeaweedFS is "credentials rejected", and nothing was written.
#[tokio::test]
async fn wrong_secret_is_credentials_rejected_on_every_operation() {
    let Some(server) = servers::seaweedfs() else {
        return;
    };
    let config = server.config_with_secret("definitely-not-the-secret");
    let bad = Storage::connect(&config).unwrap();
    let mut good_config = config.clone();
    good_config.object_storage.secret_key = Some(server.secret_key.clone());
    let good = Storage::connect(&good_config).unwrap();
    assert_eq!(good.prefix(), bad.prefix());
    let existing = good.key("existing.bin").unwrap();
    good.put(&existing, "kept").await.unwrap();

    let new = good.key("new.bin").unwrap();
    let mut outcomes: Vec<(&str, Result<(), Error>)> = vec![
        ("put", bad.put(&new, "x").await.map(drop)),
        ("get", bad.get(&existing).await.map(drop)),
        ("head", bad.head(&existing).await.map(drop)),
        ("delete", bad.delete(&existing).await),
        (
            "delete_many",
            bad.delete_many(std::slice::from_ref(&existing)).await,
        ),
        ("copy", bad.copy(&existing, &new).await),
        ("rename", bad.rename(&existing, &new).await),
        (
            "list_with_delimiter",
            bad.list_with_delimiter(None).await.map(drop),
        ),
        (
            "list",
            bad.list(None)
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .map(drop),
        ),
        (
            "upload",
            match bad.upload(&new, &WriteOptions::default()).await {
                Ok(upload) => upload.finish().await.map(drop),
                Err(e) => Err(e),
            },
        ),
    ];
    for (operation, outcome) in outcomes.drain(..) {
        match outcome {
            Err(Error::CredentialsRejected { .. }) => {}
            other => panic!("{operation}: expected CredentialsRejected, got {other:?}"),
        }
    }
    assert_eq!(good.get(&existing).await.unwrap().data, "kept");
    assert!(
        !good.exists(&new).await.unwrap(),
        "a rejected put wrote something"
    );
    good.delete(&existing).await.unwrap();
}

/// The symlink rule on the local provider, through `Storage`: a symlink below the root
/// that points outside it is never followed — not for reading, writing or listing.
#[tokio::test]
async fn local_symlink_out_of_the_root_is_never_followed() {
    let storage = maskstore_testkit::temp_dir();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.png"), "outside the root").unwrap();
    let mask_dir = storage.root().join("mask");
    std::fs::create_dir_all(&mask_dir).unwrap();
    std::os::unix::fs::symlink(outside.path(), mask_dir.join("escape")).unwrap();

    let through = storage.key("escape/secret.png").unwrap();
    assert!(matches!(
        storage.get(&through).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        storage.head(&through).await,
        Err(Error::NotFound { .. })
    ));
    assert!(storage.put(&through, "overwrite").await.is_err());
    storage.delete(&through).await.unwrap();
    let listed: Vec<_> = storage.list(None).unwrap().try_collect().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let level = storage.list_with_delimiter(None).await.unwrap();
    assert!(level.prefixes.is_empty(), "{level:?}");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.png")).unwrap(),
        "outside the root"
    );
}
