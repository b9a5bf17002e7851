//! `driftless check`: is this cluster ready for GitRepositories? Each line says ✓ or ✗ and, for
//! ✗, what to do about it.

use std::process::ExitCode;

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        },
        coordination::v1::Lease,
        core::v1::{Service, ServiceAccount},
        discovery::v1::EndpointSlice,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::{
    CliError, NamespaceArgs,
    connect::connect,
    output::{self, Tone},
};
use crate::api::GitRepository;

const CRD_NAME: &str = "gitrepositories.driftless.dev";
const SERVED_VERSION: &str = "v1alpha1";
const LEASE_NAME: &str = "driftless-leader";
/// The chart's label on the controller's Deployment.
const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=driftless";

/// One line of the report.
struct Finding {
    ok: bool,
    what: String,
    fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Self {
            ok: true,
            what: what.into(),
            fix: None,
        }
    }

    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

pub async fn run(args: NamespaceArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let client = &connection.client;
    let mut findings = vec![crd(client).await];
    findings.push(controller(client).await);
    findings.push(webhook(client).await);
    findings.extend(rights(client, &connection.namespace).await);
    findings.extend(service_accounts(client, &connection.namespace).await);
    let mut failed = false;
    for finding in &findings {
        failed |= !finding.ok;
        let mark = if finding.ok {
            output::toned("✓", Tone::Good, false)
        } else {
            output::toned("✗", Tone::Bad, false)
        };
        println!("{mark} {}", finding.what);
        if let Some(fix) = &finding.fix {
            println!("    fix: {fix}");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn crd(client: &Client) -> Finding {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let install =
        "install the chart (`helm install driftless charts/driftless`) or `kubectl apply -f crds/`";
    match api.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => {
            let served = crd
                .spec
                .versions
                .iter()
                .any(|v| v.name == SERVED_VERSION && v.served);
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            match (served, established) {
                (true, true) => {
                    Finding::ok(format!("CRD {CRD_NAME} installed, {SERVED_VERSION} served"))
                }
                (false, _) => Finding::fail(
                    format!("CRD {CRD_NAME} does not serve {SERVED_VERSION}"),
                    "upgrade the CRD: `kubectl apply -f crds/`",
                ),
                (_, false) => Finding::fail(
                    format!("CRD {CRD_NAME} is not Established yet"),
                    "wait, then `kubectl describe crd gitrepositories.driftless.dev`",
                ),
            }
        }
        Ok(None) => Finding::fail(format!("CRD {CRD_NAME} is not installed"), install),
        Err(error) => Finding::fail(
            format!("cannot read CRD {CRD_NAME}: {error}"),
            "use a kubeconfig that may read CustomResourceDefinitions",
        ),
    }
}

/// A leader's Lease renewed lately, else a Deployment of the chart with an available replica.
async fn controller(client: &Client) -> Finding {
    let leases: Api<Lease> = Api::all(client.clone());
    let fields = ListParams::default().fields(&format!("metadata.name={LEASE_NAME}"));
    if let Ok(list) = leases.list(&fields).await {
        let fresh = list.items.iter().find_map(|lease| {
            let spec = lease.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?.0;
            let age = output::seconds_since(&renewed);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            (age <= duration).then(|| {
                (
                    lease.namespace().unwrap_or_default(),
                    spec.holder_identity.clone().unwrap_or_default(),
                    age,
                )
            })
        });
        if let Some((namespace, holder, age)) = fresh {
            return Finding::ok(format!(
                "controller leading: {holder} (Lease {namespace}/{LEASE_NAME}, renewed {age}s ago)"
            ));
        }
    }
    let deployments: Api<Deployment> = Api::all(client.clone());
    match deployments
        .list(&ListParams::default().labels(CONTROLLER_SELECTOR))
        .await
    {
        Ok(list) => match list.items.iter().find(|d| {
            d.status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0)
                > 0
        }) {
            Some(deployment) => Finding::ok(format!(
                "controller running: Deployment {}/{} (no fresh leader Lease: leader election off or starting)",
                deployment.namespace().unwrap_or_default(),
                deployment.name_any()
            )),
            None => Finding::fail(
                "no running controller found (no fresh Lease driftless-leader, no available Deployment labelled app.kubernetes.io/name=driftless)",
                "install the chart, or look at `kubectl -n driftless-system logs deploy/driftless`",
            ),
        },
        Err(error) => Finding::fail(
            format!("cannot look for the controller: {error}"),
            "use a kubeconfig that may list Deployments and Leases",
        ),
    }
}

/// The chart's webhook Service, if any, and whether it has a ready endpoint. Without one,
/// pushes are noticed by polling only, which is a choice, not a fault.
async fn webhook(client: &Client) -> Finding {
    let services: Api<Service> = Api::all(client.clone());
    let listed = match services
        .list(&ListParams::default().labels(CONTROLLER_SELECTOR))
        .await
    {
        Ok(list) => list.items,
        Err(error) => {
            return Finding::fail(
                format!("cannot look for the webhook Service: {error}"),
                "use a kubeconfig that may list Services",
            );
        }
    };
    let has_webhook_port = |service: &&Service| {
        service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|ports| ports.iter().any(|p| p.name.as_deref() == Some("webhook")))
    };
    let Some(service) = listed.iter().find(has_webhook_port) else {
        return Finding::ok(
            "webhook receiver not exposed by a Service (webhooks disabled, or not installed by the chart): pushes are noticed by polling",
        );
    };
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("kubernetes.io/service-name={name}");
    let ready = match slices.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list
            .items
            .iter()
            .flat_map(|slice| slice.endpoints.iter())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
            .count(),
        Err(error) => {
            return Finding::fail(
                format!("cannot read the endpoints of Service {namespace}/{name}: {error}"),
                "use a kubeconfig that may list EndpointSlices",
            );
        }
    };
    if ready > 0 {
        Finding::ok(format!(
            "webhook receiver: Service {namespace}/{name}, {ready} ready endpoint(s)"
        ))
    } else {
        Finding::fail(
            format!(
                "webhook Service {namespace}/{name} has no ready endpoint: pushes are not received"
            ),
            format!(
                "`kubectl -n {namespace} get pods -l {CONTROLLER_SELECTOR}`; look at the controller's readiness and logs"
            ),
        )
    }
}

/// What a user of GitRepositories needs in the namespace.
async fn rights(client: &Client, namespace: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for verb in ["get", "list", "create", "patch", "delete"] {
        match may(client, namespace, verb).await {
            Ok(true) => {}
            Ok(false) => findings.push(Finding::fail(
                format!("you may not {verb} GitRepositories in namespace {namespace}"),
                "ask for a Role granting gitrepositories.driftless.dev (get, list, watch, create, patch, delete)",
            )),
            Err(error) => findings.push(Finding::fail(format!("cannot check your rights: {error}"), "check the kubeconfig")),
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok(format!(
            "you may manage GitRepositories in namespace {namespace}"
        )));
    }
    findings
}

async fn may(client: &Client, namespace: &str, verb: &str) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some("driftless.dev".into()),
                resource: Some("gitrepositories".into()),
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&Default::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Every `serviceAccountName` named in the namespace exists (impersonation fails otherwise).
async fn service_accounts(client: &Client, namespace: &str) -> Vec<Finding> {
    let repositories: Api<GitRepository> = Api::namespaced(client.clone(), namespace);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = repositories.list(&Default::default()).await else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for repository in &list.items {
        let Some(account) = &repository.spec.service_account_name else {
            continue;
        };
        if let Ok(None) = accounts.get_opt(account).await {
            findings.push(Finding::fail(
                format!("GitRepository {namespace}/{} names ServiceAccount {account}, which does not exist", repository.name_any()),
                format!("`kubectl -n {namespace} create serviceaccount {account}` and bind it a Role (examples/multi-tenant/)"),
            ));
        }
    }
    findings
}
