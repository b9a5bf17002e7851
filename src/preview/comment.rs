//! The comment a preview posts: a hidden marker (so the next push finds and edits it), the
//! counts, and a collapsed diff per object, cut to the host's limit with a note. Markdown as
//! GitHub, GitLab, Gitea and Bitbucket render it.

use super::plan::{Action, Plan};

/// What the comment is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    /// `namespace/name` of the GitRepository.
    pub object: &'a str,
    /// The previewed head commit (or revision).
    pub commit: &'a str,
}

/// The hidden line that marks the one comment of `object` on a pull request.
pub fn marker(object: &str) -> String {
    format!("<!-- driftless-plan {object} -->")
}

/// The comment of a plan that validated, at most `limit` characters.
pub fn plan_comment(subject: &Subject<'_>, plan: &Plan, limit: usize) -> String {
    let mut head = header(subject);
    if !plan.changes_anything() {
        head.push_str(&format!(
            "No changes: {} objects are already as this commit wants them.\n",
            plan.unchanged
        ));
        return head;
    }
    head.push_str(&format!("**Plan:** {}.\n\n", plan.summary()));
    let sections: Vec<String> = plan.objects.iter().map(section).collect();
    let mut body = head;
    for (index, section) in sections.iter().enumerate() {
        let left = sections.len() - index;
        let note = omitted_note(left);
        if body.chars().count() + section.chars().count() + note.chars().count() > limit {
            body.push_str(&note);
            return body;
        }
        body.push_str(section);
    }
    body
}

/// The comment of a plan that could not be made: the reason (which names the file).
pub fn failure_comment(subject: &Subject<'_>, reason: &str, limit: usize) -> String {
    let mut body = header(subject);
    body.push_str("**The plan failed**: this commit cannot be applied as it is.\n\n");
    let fence = fence_for(reason);
    let room = limit.saturating_sub(body.chars().count() + 2 * fence.len() + 8);
    let reason = crate::commit_status::truncate(reason, room);
    body.push_str(&format!("{fence}\n{reason}\n{fence}\n"));
    body
}

fn header(subject: &Subject<'_>) -> String {
    let commit: String = subject.commit.chars().take(12).collect();
    format!(
        "{}\n### driftless plan for `{}` at `{commit}`\n\n",
        marker(subject.object),
        subject.object
    )
}

fn section(planned: &super::plan::PlannedObject) -> String {
    let (sign, verb) = match &planned.action {
        Action::Create => ("+", "create".to_owned()),
        Action::CreateLater(why) => (
            "+",
            format!("create (validated once what it needs exists: {why})"),
        ),
        Action::Change => ("~", "change".to_owned()),
        Action::Prune => ("-", "prune".to_owned()),
    };
    let title = format!(
        "{sign} {verb} <code>{}</code>",
        escape_html(&planned.object)
    );
    match &planned.diff {
        Some(diff) => {
            let fence = fence_for(diff);
            format!(
                "<details><summary>{title}</summary>\n\n{fence}diff\n{}{fence}\n\n</details>\n",
                with_final_newline(diff)
            )
        }
        None => format!("{title}<br>\n"),
    }
}

fn omitted_note(left: usize) -> String {
    format!(
        "\n… {left} more objects not shown: the comment reached the host's size limit. \
         `driftless diff NAME --ref <this commit>` prints the whole plan.\n"
    )
}

/// A code fence longer than any run of backticks in `text`, so the text cannot close it.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn with_final_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preview::plan::PlannedObject;

    const SUBJECT: Subject<'static> = Subject {
        object: "team-a/app",
        commit: "0123456789abcdef0123456789abcdef01234567",
    };

    fn change(name: &str, diff: &str) -> PlannedObject {
        PlannedObject {
            action: Action::Change,
            object: format!("v1 ConfigMap team-a/{name}"),
            diff: Some(diff.to_owned()),
        }
    }

    #[test]
    fn the_comment_starts_with_its_marker_and_collapses_each_diff() {
        let plan = Plan {
            objects: vec![
                change("a", "-x: 1\n+x: 2\n"),
                PlannedObject {
                    action: Action::Prune,
                    object: "Deployment team-a/old".into(),
                    diff: None,
                },
            ],
            unchanged: 3,
        };
        let text = plan_comment(&SUBJECT, &plan, 65_536);
        assert!(text.starts_with(&marker("team-a/app")), "{text}");
        assert!(text.contains("at `0123456789ab`"), "{text}");
        assert!(
            text.contains("0 to create, 1 to change, 1 to prune, 3 unchanged"),
            "{text}"
        );
        assert!(
            text.contains(
                "<details><summary>~ change <code>v1 ConfigMap team-a/a</code></summary>"
            ),
            "{text}"
        );
        assert!(text.contains("```diff\n-x: 1\n+x: 2\n```"), "{text}");
        assert!(
            text.contains("- prune <code>Deployment team-a/old</code>"),
            "{text}"
        );
    }

    #[test]
    fn a_long_plan_is_cut_to_the_limit_with_a_note() {
        let big = "+line\n".repeat(200);
        let plan = Plan {
            objects: (0..50).map(|i| change(&format!("c{i}"), &big)).collect(),
            unchanged: 0,
        };
        let text = plan_comment(&SUBJECT, &plan, 10_000);
        assert!(text.chars().count() <= 10_000, "{}", text.len());
        assert!(text.contains("more objects not shown"), "{text}");
        assert!(text.starts_with(&marker("team-a/app")));
    }

    #[test]
    fn backticks_in_a_diff_cannot_close_its_fence() {
        let plan = Plan {
            objects: vec![change("a", "+x: \"```\"\n")],
            unchanged: 0,
        };
        let text = plan_comment(&SUBJECT, &plan, 65_536);
        assert!(text.contains("````diff\n"), "{text}");
    }

    #[test]
    fn a_failure_names_the_reason() {
        let text = failure_comment(
            &SUBJECT,
            "app/broken.yaml: mapping values are not allowed",
            65_536,
        );
        assert!(text.starts_with(&marker("team-a/app")));
        assert!(text.contains("The plan failed"));
        assert!(text.contains("app/broken.yaml: mapping values are not allowed"));
    }
}
