//! Pull request previews: what merging a pull request would change in the cluster, as a plan
//! ([`plan`]: objects to create, change and prune, each a diff with Secret values masked), a
//! comment ([`comment`], found again by a hidden marker and edited in place) and the hosts'
//! comment APIs ([`request`]). Pure functions: the controller fetches, renders and dry-runs
//! the pull request's head as an apply would and posts what these build; `driftless diff`
//! prints the same plan. [`rate_limit`] bounds how many previews one repository starts per
//! minute.

pub mod comment;
pub mod plan;
pub mod rate_limit;
pub mod request;

pub use comment::{Subject, failure_comment, marker, plan_comment};
pub use plan::{Action, Plan, PlannedObject, would_prune};
pub use rate_limit::PreviewRateLimit;
pub use request::{
    Comment, CommentRequest, comment_limit, create_comment, find_marked, list_comments,
    update_comment,
};

use crate::api::GitReference;

/// The ref to fetch for a preview of `wanted`: a full commit SHA (pinned on `followed`, the
/// object's own ref, whose branch is fetched to find it), or any ref name: a pull request's
/// (`refs/pull/N/head`, `refs/merge-requests/N/head`, `refs/pull-requests/N/from`) or a
/// branch.
pub fn preview_reference(wanted: &str, followed: Option<&GitReference>) -> GitReference {
    let is_commit = wanted.len() == 40 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
    if is_commit {
        return GitReference {
            commit: Some(wanted.to_ascii_lowercase()),
            branch: followed.and_then(|r| r.branch.clone()),
            ..GitReference::default()
        };
    }
    GitReference {
        branch: Some(wanted.to_owned()),
        ..GitReference::default()
    }
}

/// The ref of a pull request's head, pinned on its commit when the host named it.
pub fn pull_request_reference(head_ref: &str, head_commit: Option<&str>) -> GitReference {
    GitReference {
        branch: Some(head_ref.to_owned()),
        commit: head_commit.map(str::to_ascii_lowercase),
        ..GitReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789ABCDEF0123456789abcdef01234567";

    #[test]
    fn a_commit_is_pinned_on_the_followed_branch_and_a_ref_is_fetched_by_name() {
        let followed = GitReference {
            branch: Some("main".into()),
            ..GitReference::default()
        };
        let commit = preview_reference(SHA, Some(&followed));
        assert_eq!(
            commit.commit.as_deref(),
            Some(SHA.to_ascii_lowercase().as_str())
        );
        assert_eq!(commit.branch.as_deref(), Some("main"));
        let pull = preview_reference("refs/pull/7/head", Some(&followed));
        assert_eq!(pull.branch.as_deref(), Some("refs/pull/7/head"));
        assert_eq!(pull.commit, None);
        let pinned = pull_request_reference("refs/merge-requests/3/head", Some(SHA));
        assert_eq!(pinned.branch.as_deref(), Some("refs/merge-requests/3/head"));
        assert_eq!(
            pinned.commit.as_deref(),
            Some(SHA.to_ascii_lowercase().as_str())
        );
    }
}
