//! What one component may open: a set of resources (stores, databases) shared by the
//! application, and the labels granted to the component in `spin.toml`.

use std::collections::BTreeSet;
use std::sync::Arc;

/// The application's resources of one kind, and the labels one component may open.
pub struct Grant<T> {
    resources: Arc<T>,
    labels: Arc<BTreeSet<String>>,
}

impl<T> Clone for Grant<T> {
    fn clone(&self) -> Self {
        Self {
            resources: Arc::clone(&self.resources),
            labels: Arc::clone(&self.labels),
        }
    }
}

impl<T> Grant<T> {
    /// Grants `labels` of `resources`.
    pub fn new(resources: Arc<T>, labels: &[String]) -> Self {
        Self {
            resources,
            labels: Arc::new(labels.iter().cloned().collect()),
        }
    }

    /// The resources, if `label` was granted (`None` means access denied).
    pub fn open(&self, label: &str) -> Option<&T> {
        self.labels.contains(label).then_some(&*self.resources)
    }
}
