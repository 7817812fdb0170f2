//! The committed CRDs (`crds/` and the chart's copy) are exactly what the Rust types generate, and
//! read back with the names, printer columns and validation `kubectl` users rely on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use carbonshift::api::crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

const COPIES: [&str; 2] = ["crds", "charts/carbonshift/crds"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run `make generate` to write the CRDs",
            path.display()
        )
    })
}

fn rendered() -> Vec<(&'static str, String)> {
    crd::render_all().unwrap_or_else(|e| panic!("cannot render the CRDs: {e}"))
}

#[test]
fn committed_crds_match_the_code() {
    let rendered = rendered();
    for dir in COPIES {
        for (file, yaml) in &rendered {
            let path = repo().join(dir).join(file);
            assert!(
                read(&path) == *yaml,
                "{dir}/{file} differs from what src/api/ generates; run `make generate` and commit the result"
            );
        }
        let expected: BTreeSet<String> = rendered.iter().map(|(f, _)| f.to_string()).collect();
        let present: BTreeSet<String> = std::fs::read_dir(repo().join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}; run `make generate`"))
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
            .collect();
        assert_eq!(
            present, expected,
            "{dir}/ holds CRD files the code no longer generates (or misses some); run `make generate` and remove stale files"
        );
    }
}

#[test]
fn crd_command_output_parses_as_the_same_objects() {
    for (file, yaml) in rendered() {
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&yaml)
            .unwrap_or_else(|e| panic!("{file} does not parse back: {e}"));
        let original = crd::all()
            .into_iter()
            .find(|(f, _)| *f == file)
            .map(|(_, crd)| crd);
        assert_eq!(Some(parsed), original, "{file} does not round-trip");
    }
}

fn load(file: &str) -> CustomResourceDefinition {
    let path = repo().join("crds").join(file);
    serde_saphyr::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// (name, type, jsonPath) of every printer column.
fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String)> {
    crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
        .collect()
}

fn owned(columns: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    columns
        .iter()
        .map(|(n, t, p)| (n.to_string(), t.to_string(), p.to_string()))
        .collect()
}

fn schema(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("{} has no schema", crd.spec.names.kind))
}

/// The schema at a dotted path of property names.
fn at<'a>(root: &'a JSONSchemaProps, path: &str) -> &'a JSONSchemaProps {
    path.split('.').fold(root, |node, key| {
        node.properties
            .as_ref()
            .and_then(|p| p.get(key))
            .unwrap_or_else(|| panic!("no property {key} on the way to {path}"))
    })
}

/// The CEL rules at a schema node.
fn rules(node: &JSONSchemaProps) -> Vec<&str> {
    node.x_kubernetes_validations
        .iter()
        .flatten()
        .map(|v| v.rule.as_str())
        .collect()
}

fn common_checks(crd: &CustomResourceDefinition, plural: &str, kind: &str, short: &str) {
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(format!("{plural}.carbonshift.dev").as_str())
    );
    assert_eq!(crd.spec.group, "carbonshift.dev");
    assert_eq!(crd.spec.names.kind, kind);
    assert_eq!(crd.spec.names.plural, plural);
    assert_eq!(
        crd.spec.names.singular.as_deref(),
        Some(kind.to_lowercase().as_str())
    );
    assert_eq!(crd.spec.names.short_names, Some(vec![short.to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["carbonshift".to_string()])
    );
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(
        version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some()),
        "{kind} has no status subresource"
    );
    assert_eq!(schema(crd).required, Some(vec!["spec".to_string()]));
}

#[test]
fn carbon_forecast_reads_back() {
    let crd = load("carbonforecasts.carbonshift.dev.yaml");
    common_checks(&crd, "carbonforecasts", "CarbonForecast", "cfc");
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(
        columns(&crd),
        owned(&[
            ("Provider", "string", ".status.provider"),
            ("Region", "string", ".status.region"),
            ("Now (g/kWh)", "number", ".status.currentIntensity"),
            ("Lowest Ahead", "number", ".status.lowestIntensity"),
            ("Lowest At", "string", ".status.lowestAt"),
            // Capacity used / capacity, for example `3/3 jobs, 8/16 GPUs`.
            ("Capacity", "string", ".status.capacityUsed.summary"),
            ("Updated", "date", ".status.lastRefreshTime"),
            (
                "Ready",
                "string",
                r#".status.conditions[?(@.type=="Ready")].status"#
            ),
            ("Age", "date", ".metadata.creationTimestamp"),
        ])
    );

    let root = schema(&crd);
    let provider = at(root, "spec.provider");
    let keys: BTreeSet<&str> = provider
        .properties
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "ukCarbonIntensity",
            "electricityMaps",
            "wattTime",
            "carbonAwareSdk",
            "static",
            "trace"
        ])
    );
    // Exactly one provider key: one `oneOf` branch per key, each requiring only that key.
    let branches: BTreeSet<Vec<String>> = provider
        .one_of
        .iter()
        .flatten()
        .map(|b| b.required.clone().unwrap_or_default())
        .collect();
    assert_eq!(branches, keys.iter().map(|k| vec![k.to_string()]).collect());

    assert_eq!(
        rules(at(root, "spec")),
        [
            "!(has(self.provider.electricityMaps) || has(self.provider.wattTime)) || has(self.credentialsSecretRef)"
        ]
    );
    assert_eq!(
        rules(at(root, "spec.provider.ukCarbonIntensity")),
        ["!(has(self.regionId) && has(self.postcode))"]
    );
    assert_eq!(
        rules(at(root, "spec.provider.trace")),
        ["has(self.configMapRef) != has(self.builtin)"]
    );
    let builtin = at(root, "spec.provider.trace.builtin");
    let names: Vec<String> = builtin
        .enum_
        .iter()
        .flatten()
        .filter_map(|v| v.0.as_str().map(str::to_string))
        .collect();
    let compiled: Vec<String> = carbonshift::trace::BUILTINS
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, compiled);

    assert_eq!(at(root, "status.points").max_items, Some(2016));
    let capacity = at(root, "spec.capacity");
    assert_eq!(rules(capacity), ["has(self.jobs) || has(self.gpus)"]);
    for key in ["jobs", "gpus"] {
        let cap = at(capacity, key);
        assert_eq!(cap.type_.as_deref(), Some("integer"), "{key}");
        assert_eq!(cap.minimum, Some(1.0), "capacity.{key} must be positive");
    }
    let selector = at(root, "spec.placement.nodeSelector");
    assert_eq!(
        (selector.min_properties, selector.max_properties),
        (Some(1), Some(16))
    );
    let value = match selector.additional_properties.as_ref() {
        Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(v)) => v,
        other => panic!("placement.nodeSelector values: {other:?}"),
    };
    assert_eq!(value.max_length, Some(63));
    assert_eq!(
        value.pattern.as_deref(),
        Some(carbonshift::api::forecast::LABEL_VALUE_PATTERN)
    );
    assert_eq!(
        at(root, "status.capacityUsed").required,
        Some(vec!["gpus".into(), "jobs".into(), "summary".into()])
    );
    assert_eq!(
        at(root, "spec.provider.static.points").max_items,
        Some(2016)
    );
    let conditions = at(root, "status.conditions");
    assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
    assert_eq!(
        conditions.x_kubernetes_list_map_keys,
        Some(vec!["type".to_string()])
    );
}

#[test]
fn carbon_workload_reads_back() {
    let crd = load("carbonworkloads.carbonshift.dev.yaml");
    common_checks(&crd, "carbonworkloads", "CarbonWorkload", "cwl");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        columns(&crd),
        owned(&[
            ("Kind", "string", ".spec.jobRef.kind"),
            ("Job", "string", ".spec.jobRef.name"),
            ("Phase", "string", ".status.phase"),
            // Why it is in that phase (NoForecast, DeadlineRelease, ...), visible at a glance.
            ("Reason", "string", ".status.reason"),
            ("Planned Start", "string", ".status.plannedStart"),
            ("Deadline", "string", ".status.deadline"),
            ("Expected g/kWh", "number", ".status.expectedIntensity"),
            ("Run-Now g/kWh", "number", ".status.runNowIntensity"),
            ("Saving %", "number", ".status.savingsPercent"),
            ("Verified", "string", ".status.verification.state"),
            ("Avoided g", "number", ".status.verified.avoidedGrams"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ])
    );

    let root = schema(&crd);
    assert_eq!(
        rules(at(root, "spec.jobRef")),
        [
            carbonshift::api::workload::JOB_REF_IMMUTABLE,
            "has(self.kind) == has(self.apiVersion)"
        ]
    );
    let phases: Vec<String> = at(root, "status.phase")
        .enum_
        .iter()
        .flatten()
        .filter_map(|v| v.0.as_str().map(str::to_string))
        .collect();
    let expected: Vec<String> = carbonshift::api::Phase::ALL
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    assert_eq!(phases, expected);
    let conditions = at(root, "status.conditions");
    assert_eq!(conditions.x_kubernetes_list_type.as_deref(), Some("map"));
}

/// Every schema node has a type (a structural schema), only `date-time` formats remain (others make
/// API servers from 1.34 warn), every field is documented for `kubectl explain`, and `oneOf`
/// branches only say which keys are required.
#[test]
fn schemas_are_structural_and_documented() {
    fn walk(node: &JSONSchemaProps, path: &str) {
        assert!(node.type_.is_some(), "{path}: no type");
        assert!(
            node.description.as_deref().is_some_and(|d| !d.is_empty()),
            "{path}: no description"
        );
        if let Some(format) = &node.format {
            assert_eq!(format, "date-time", "{path}: format {format}");
        }
        for branch in node.one_of.iter().chain(node.any_of.iter()).flatten() {
            assert!(
                branch.type_.is_none()
                    && branch.description.is_none()
                    && branch.properties.is_none()
                    && branch.nullable.is_none()
                    && branch.default.is_none(),
                "{path}: a oneOf/anyOf branch says more than which keys are required"
            );
        }
        for (key, child) in node.properties.iter().flatten() {
            walk(child, &format!("{path}.{key}"));
        }
        if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) = &node.items {
            walk(items, &format!("{path}[]"));
        }
    }
    for (file, crd) in crd::all() {
        let root = schema(&crd);
        for part in ["spec", "status"] {
            walk(at(root, part), &format!("{file}: {part}"));
        }
    }
}

#[test]
fn carbon_budget_reads_back() {
    let crd = load("carbonbudgets.carbonshift.dev.yaml");
    common_checks(&crd, "carbonbudgets", "CarbonBudget", "cbud");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        columns(&crd),
        owned(&[
            ("Used", "string", ".status.used"),
            ("Limit", "string", ".status.limit"),
            ("Period", "string", ".status.period"),
            // A future time: a `date` column would print `<invalid>`.
            ("Resets", "string", ".status.resetsAt"),
            ("Action", "string", ".spec.action"),
            (
                "Exhausted",
                "string",
                ".status.conditions[?(@.type==\"Exhausted\")].status"
            ),
            ("Age", "date", ".metadata.creationTimestamp"),
        ])
    );
    let root = schema(&crd);
    assert_eq!(
        rules(at(root, "spec")),
        ["has(self.gramsPerMonth) || has(self.kwhPerMonth)"]
    );
    let actions: Vec<String> = at(root, "spec.action")
        .enum_
        .iter()
        .flatten()
        .filter_map(|v| v.0.as_str().map(str::to_string))
        .collect();
    assert_eq!(actions, ["Warn", "Defer", "Deny"]);
}
