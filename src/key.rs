//! The spec's backend identity, so that the default case needs no key type of the caller's.

/// Which broker instance a backend belongs to.
///
/// Plain data: nothing about it panics.
///
/// # Examples
///
/// ```
/// use backend_recovery::BrokerInstanceKey;
///
/// let private = BrokerInstanceKey::Private { service_name: "indexer".into() };
/// assert_ne!(private, BrokerInstanceKey::Shared);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BrokerInstanceKey {
    /// The broker shared by every client.
    Shared,
    /// A broker private to one service.
    Private {
        /// The service that owns the private broker.
        service_name: String,
    },
    /// A broker instance the caller named explicitly.
    Explicit {
        /// The instance's name.
        name: String,
    },
}

/// A backend's identity: broker instance, service name and service version.
///
/// Two crashes count against the same budget exactly when their keys are equal. It is the
/// state's default key type; nothing about it panics.
///
/// # Examples
///
/// ```
/// use backend_recovery::{BackendKey, BrokerInstanceKey};
///
/// let key = BackendKey::new(BrokerInstanceKey::Shared, "indexer", "1.4.2");
/// assert_eq!(key.service_name, "indexer");
/// assert_ne!(key, BackendKey::new(BrokerInstanceKey::Shared, "indexer", "1.5.0"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackendKey {
    /// The broker instance the backend runs under.
    pub instance: BrokerInstanceKey,
    /// The service's name.
    pub service_name: String,
    /// The service's version.
    pub service_version: String,
}

impl BackendKey {
    /// Builds a key from its three parts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Instant;
    /// use backend_recovery::{BackendKey, BackendRecoveryState, BrokerInstanceKey};
    ///
    /// let key = BackendKey::new(BrokerInstanceKey::Shared, "search", "2.1.0");
    /// assert_eq!(key.service_version, "2.1.0");
    ///
    /// // The state's default key type.
    /// let state = BackendRecoveryState::new();
    /// let now = Instant::now();
    /// assert!(state.record_crash(key.clone(), now).is_retry());
    /// assert!(!state.status(&key, now).is_available());
    /// ```
    ///
    /// # Panics
    ///
    /// Never.
    pub fn new(
        instance: BrokerInstanceKey,
        service_name: impl Into<String>,
        service_version: impl Into<String>,
    ) -> Self {
        Self {
            instance,
            service_name: service_name.into(),
            service_version: service_version.into(),
        }
    }
}
