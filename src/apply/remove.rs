//! Deleting one object outright and waiting until it is gone: for hook objects, which are not
//! in the inventory and are replaced or removed by their delete policy, not by prune.

use std::time::Duration;

use kube::api::DeleteParams;

use super::{
    Applier,
    error::{ApplyError, ObjectFailure, reason_of},
    inventory::ObjectKey,
    object::ObjectRef,
};

impl Applier {
    /// Deletes `object` (its dependents in the background) and waits up to `within` until the
    /// server no longer has it, so an object of the same name can be created again. An object
    /// that does not exist, or whose kind is not served, is already gone.
    pub async fn delete_and_wait(
        &self,
        object: &ObjectRef,
        within: Duration,
    ) -> Result<(), ApplyError> {
        let failed = |reason: String| {
            ApplyError::Prune(vec![ObjectFailure {
                origin: "hook".into(),
                object: object.clone(),
                reason,
            }])
        };
        let key = ObjectKey::from(object);
        let api = match self.api_for(&key).await {
            Ok(Some(api)) => api,
            Ok(None) => return Ok(()),
            Err(error) => return Err(failed(reason_of(&error))),
        };
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(failed(reason_of(&error))),
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match api.get_opt(&key.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Some(_)) => return Err(failed(format!("still present after {within:?}"))),
                Err(error) => return Err(failed(reason_of(&error))),
            }
        }
    }
}
