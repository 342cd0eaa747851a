//! The account key of the `azure` provider, re-read from `account_key_file` when the file
//! changes, on the schedule of every secret file ([`SecretFiles`]): a change is adopted
//! once it has held for [`crate::secret_file::SETTLE`]. The client's requests, the SAS
//! URLs and the name repairs all sign with the key in use, so a rotation needs no restart.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use maskstore_core::{Config, Secret};
use object_store::CredentialProvider;
use object_store::azure::{AzureAccessKey, AzureCredential};

use crate::secret_file::{SecretFiles, rotated};

/// The account key in use, and the file it is re-read from when there is one.
pub(crate) struct AccountKey {
    files: Option<SecretFiles>,
    current: RwLock<(Secret, Arc<AzureCredential>)>,
}

impl std::fmt::Debug for AccountKey {
    // Names the file, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl AccountKey {
    /// The config's account key, watched when it came from `account_key_file`; `None`
    /// without a key, or with one that is not base64 (the client's builder says so).
    pub(crate) fn of(config: &Config) -> Option<Arc<AccountKey>> {
        let os = &config.object_storage;
        let key = os.account_key.as_ref()?;
        let credential = AzureAccessKey::try_new(key.expose().trim()).ok()?;
        let files = os
            .account_key_file
            .clone()
            .map(|path: PathBuf| SecretFiles::new("azure_account_key", vec![path]));
        Some(Arc::new(AccountKey {
            files,
            current: RwLock::new((
                key.clone(),
                Arc::new(AzureCredential::AccessKey(credential)),
            )),
        }))
    }

    /// The key in use, after adopting a settled change of its file.
    pub(crate) fn secret(&self) -> Secret {
        self.adopt(Instant::now());
        self.current.read().expect("account key lock").0.clone()
    }

    fn credential(&self, now: Instant) -> Arc<AzureCredential> {
        self.adopt(now);
        Arc::clone(&self.current.read().expect("account key lock").1)
    }

    /// Takes the file's new value when it settled and is an account key (base64); a value
    /// that is not is logged, by path only, and the key in use stays.
    fn adopt(&self, now: Instant) {
        let Some(files) = &self.files else { return };
        let Some(value) = files.poll(now).and_then(|mut v| v.pop()) else {
            return;
        };
        let Ok(credential) = AzureAccessKey::try_new(&value) else {
            tracing::warn!(
                file = %files.paths()[0].display(),
                "the changed account key file cannot be used: it is not base64 (write key1 or \
                 key2 of the storage account, as the Azure portal shows it); the key in use stays"
            );
            return;
        };
        let mut current = self.current.write().expect("account key lock");
        if current.0.expose() != value {
            *current = (
                Secret::new(value),
                Arc::new(AzureCredential::AccessKey(credential)),
            );
            rotated(files.name(), files.paths());
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for AccountKey {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        Ok(self.credential(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret_file::SETTLE;

    use crate::secret_file::testing::rotate as write;

    #[test]
    fn a_changed_key_file_is_adopted_once_settled_and_one_not_base64_never() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("account_key");
        write(&path, "Zmlyc3Q=");
        let mut config = Config::azure("acct", "masks")
            .unwrap()
            .with_account_key(Secret::new("Zmlyc3Q="));
        config.object_storage.account_key_file = Some(path.clone());
        let key = AccountKey::of(&config).unwrap();
        let t0 = Instant::now();
        let first = key.credential(t0);
        write(&path, "c2Vjb25k\n");
        assert!(Arc::ptr_eq(&key.credential(t0), &first), "not settled yet");
        assert_eq!(key.current.read().unwrap().0.expose(), "Zmlyc3Q=");
        let second = key.credential(t0 + SETTLE);
        assert!(!Arc::ptr_eq(&second, &first), "settled: the new key signs");
        assert_eq!(key.current.read().unwrap().0.expose(), "c2Vjb25k");
        write(&path, "not base64 at all!");
        key.credential(t0 + SETTLE * 2);
        assert!(Arc::ptr_eq(&key.credential(t0 + SETTLE * 4), &second));
        assert_eq!(key.current.read().unwrap().0.expose(), "c2Vjb25k");
        assert!(!format!("{key:?}").contains("c2Vjb25k"));
    }
}
