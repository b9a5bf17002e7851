//! Every `driftless.dev/*` label, annotation and finalizer driftless reads or writes on
//! Kubernetes objects: part of the API users and tools rely on, so each is defined here once
//! and every use refers to it.

/// Annotation whose new value asks for an immediate reconcile (webhooks and `driftless
/// reconcile` set it to the current time).
pub const RECONCILE_REQUESTED_AT: &str = "driftless.dev/reconcile-requested-at";

/// The finalizer that lets the controller delete (or deliberately orphan) what a GitRepository
/// applied before the GitRepository itself goes away.
pub const FINALIZER: &str = "driftless.dev/finalizer";

/// Annotation holding a hash of the desired object as last applied: when the live object carries
/// the hash of the current desired object, any difference found by the dry run is drift made by
/// hand, not a change in Git.
pub const APPLIED_HASH_ANNOTATION: &str = "driftless.dev/applied-hash";

/// Per-object opt-out annotation; `if-not-present` creates the object once and never updates it.
pub const APPLY_ANNOTATION: &str = "driftless.dev/apply";

/// Value of [`APPLY_ANNOTATION`] that makes an object create-only.
pub const IF_NOT_PRESENT: &str = "if-not-present";

/// Annotation that keeps one object out of pruning when set to [`PRUNE_DISABLED`].
pub const PRUNE_ANNOTATION: &str = "driftless.dev/prune";

/// The value of [`PRUNE_ANNOTATION`] that keeps an object.
pub const PRUNE_DISABLED: &str = "disabled";

/// The value of [`PRUNE_ANNOTATION`] a CustomResourceDefinition needs before prune deletes it.
pub const PRUNE_ENABLED: &str = "enabled";

/// Label naming the owning GitRepository; the controller puts it on every applied object, and
/// prune deletes only objects that still carry it. Its value is the name, shortened with a hash
/// when it is longer than a label value may be.
pub const OWNER_NAME_LABEL: &str = "driftless.dev/name";

/// Label naming the owning GitRepository's namespace (see [`OWNER_NAME_LABEL`]).
pub const OWNER_NAMESPACE_LABEL: &str = "driftless.dev/namespace";

/// Label or annotation that keeps one object's `${var}` expressions as they are when set to
/// `disabled` (Flux's `kustomize.toolkit.fluxcd.io/substitute` is accepted as well).
pub const SUBSTITUTE_ANNOTATION: &str = "driftless.dev/substitute";

/// Annotation putting an object in an apply wave (an integer, default 0): the waves of a
/// revision are applied in ascending order, each after every object of the lower waves is
/// healthy.
pub const APPLY_WAVE_ANNOTATION: &str = "driftless.dev/apply-wave";

/// Argo CD's wave annotation, read as [`APPLY_WAVE_ANNOTATION`] when that one is absent (unless
/// the controller runs with `--ignore-argocd-annotations`).
pub const ARGOCD_SYNC_WAVE_ANNOTATION: &str = "argocd.argoproj.io/sync-wave";

/// Annotation making an object a hook: `PreApply` (applied and healthy before anything else
/// of a new revision is written), `PostApply` (after every object is applied and healthy),
/// `ApplyFailed` (when the apply or a hook fails), or `Skip` (never applied). Hooks run once per
/// new revision or spec change, are not in the inventory and are never pruned.
pub const HOOK_ANNOTATION: &str = "driftless.dev/hook";

/// When a hook object is deleted: a comma-separated list of `BeforeHookCreation` (the
/// default), `HookSucceeded`, `HookFailed`, as Argo CD and Helm define them.
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "driftless.dev/hook-delete-policy";

/// Argo CD's hook annotation (`PreSync`, `Sync`, `PostSync`, `SyncFail`, `Skip`, ...), read as
/// [`HOOK_ANNOTATION`] unless `--ignore-argocd-annotations`.
pub const ARGOCD_HOOK_ANNOTATION: &str = "argocd.argoproj.io/hook";

/// Argo CD's [`HOOK_DELETE_POLICY_ANNOTATION`].
pub const ARGOCD_HOOK_DELETE_POLICY_ANNOTATION: &str = "argocd.argoproj.io/hook-delete-policy";
