//! The seam between [`crate::Storage`] and the providers: which backend a storage is, as a
//! typed value the facade and the error classifier ask instead of comparing names.

use std::fmt;
use std::sync::Arc;

use maskstore_core::Provider;

/// A storage's backend: its name in messages and metrics, and the provider it is (none for
/// a storage wrapped around a bare object_store, which gets no provider's rules).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    label: Arc<str>,
    provider: Option<Provider>,
}

impl Backend {
    /// The backend of `provider`, named as the config spells it.
    pub(crate) fn of(provider: Provider) -> Backend {
        Backend {
            label: provider.as_str().into(),
            provider: Some(provider),
        }
    }

    /// A backend no provider of maskstore's built, named `label` (a wrapper's store).
    pub(crate) fn foreign(label: &str) -> Backend {
        Backend {
            label: label.into(),
            provider: None,
        }
    }

    /// The provider it is, when maskstore built it.
    pub(crate) fn provider(&self) -> Option<Provider> {
        self.provider
    }
}

impl std::ops::Deref for Backend {
    type Target = str;

    fn deref(&self) -> &str {
        &self.label
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.label, f)
    }
}

mod profile;
pub(crate) use profile::{Profile, profile_of};
