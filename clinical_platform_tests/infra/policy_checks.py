"""Static review of every policy in the platform's CloudFormation template.

Reads the template as CloudFormation does (cfn-lint's decoder turns `!Sub` and friends into
`Fn::Sub` ...) and reports, as one line each: Allow statements granting a whole service or
every resource, AWS-managed policies nobody reviewed, and any way for the analyst role to reach
identifiable data (the curated and quarantine zones, their Glue databases, Lake Formation grants
on them, or a hop into another role).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "cloudformation" / "platform.yaml"

# Allow statements that must name "*" as their resource, keyed by (role, Sid), with the reason.
WILDCARD_RESOURCE_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("DagsterRole", "RunTaggedClusters"): (
        "elasticmapreduce:RunJobFlow creates a cluster that has no ARN yet; the statement "
        "requires the request to carry the platform tag (aws:RequestTag/project)"
    ),
    ("CuratedReaderRole", "LakeFormationCredentialVending"): (
        "lakeformation:GetDataAccess supports no resource-level permissions; the credentials "
        "it vends are bounded by the Lake Formation grants"
    ),
    ("AnalystRole", "LakeFormationCredentialVending"): (
        "lakeformation:GetDataAccess supports no resource-level permissions; the credentials "
        "it vends are bounded by the Lake Formation grants"
    ),
}

# AWS-managed policies a role may carry, keyed by (role, policy name), with the reason.
REVIEWED_MANAGED_POLICIES: dict[tuple[str, str], str] = {
    ("EmrServiceRole", "AmazonEMRServicePolicy_v2"): (
        "EMR's own service policy: it acts only on EC2 resources tagged "
        "for-use-with-amazon-emr-managed-policies=true"
    ),
}

ANALYST_ROLE = "AnalystRole"
IDENTIFIABLE_ZONES = ("curated", "quarantine")
_IDENTIFIABLE_DATABASES = ("CuratedDatabase", "QuarantineDatabase")
_ROLE_HOPS = ("sts:assumerole", "sts:assumerolewithwebidentity", "iam:passrole")
_LAKE_FORMATION_GRANTS = (
    "AWS::LakeFormation::PrincipalPermissions",
    "AWS::LakeFormation::Permissions",
)


@dataclass(frozen=True)
class PolicyStatement:
    """One statement of one policy, with the roles it is granted to."""

    source: str  # "EmrInstanceRole/lake-zones", "LakeBucketPolicy"
    owner: str  # logical id of the role or resource the policy belongs to
    kind: str  # "identity", "bucket" or "key"
    roles: tuple[str, ...]
    body: dict[str, Any]

    @property
    def sid(self) -> str | None:
        return self.body.get("Sid")

    @property
    def allows(self) -> bool:
        return self.body.get("Effect") == "Allow"

    @property
    def actions(self) -> list[str]:
        return [str(a) for a in as_list(self.body.get("Action"))]

    @property
    def resources(self) -> list[str]:
        return [render(r) for r in as_list(self.body.get("Resource"))]


@dataclass(frozen=True)
class Finding:
    source: str
    sid: str | None
    problem: str

    def __str__(self) -> str:
        return f"{self.source} [{self.sid or 'no Sid'}]: {self.problem}"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain dicts and lists, short tags in their long form."""
    decoded = cfn_yaml.load(str(path))
    return json.loads(json.dumps(decoded))


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """An intrinsic function as the text CloudFormation would build (`${LakeBucket.Arn}/...`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((name, argument),) = value.items()
        if name == "Ref":
            return f"${{{argument}}}"
        if name == "Fn::GetAtt":
            parts = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return f"${{{parts[0]}.{parts[1]}}}"
        if name == "Fn::Sub":
            if isinstance(argument, list):
                text, variables = argument
                for key, replacement in variables.items():
                    text = text.replace(f"${{{key}}}", render(replacement))
                return text
            return argument
        if name == "Fn::Join":
            separator, parts = argument
            return separator.join(render(p) for p in parts)
    return json.dumps(value, sort_keys=True)


def policy_statements(template: dict[str, Any]) -> list[PolicyStatement]:
    """Every statement of every identity, bucket and key policy in the template."""
    found: list[PolicyStatement] = []
    for logical_id, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        documents: list[tuple[str, str, tuple[str, ...], dict[str, Any]]] = []
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                source = f"{logical_id}/{policy['PolicyName']}"
                documents.append((source, "identity", (logical_id,), policy["PolicyDocument"]))
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = tuple(render(r).strip("${}") for r in props.get("Roles", []))
            documents.append((logical_id, "identity", roles, props["PolicyDocument"]))
        elif kind == "AWS::S3::BucketPolicy":
            documents.append((logical_id, "bucket", (), props["PolicyDocument"]))
        elif kind == "AWS::KMS::Key":
            documents.append((logical_id, "key", (), props["KeyPolicy"]))
        for source, policy_kind, roles, document in documents:
            for body in as_list(document.get("Statement")):
                found.append(PolicyStatement(source, logical_id, policy_kind, roles, body))
    return found


def policy_findings(template: dict[str, Any]) -> list[Finding]:
    """Every problem of every policy in the template; empty when the template is clean."""
    statements = policy_statements(template)
    findings = [f for s in statements if s.allows for f in _wildcard_findings(s)]
    findings += _managed_policy_findings(template)
    findings += _analyst_findings(template, statements)
    return findings


def _wildcard_findings(statement: PolicyStatement) -> Iterator[Finding]:
    def finding(problem: str) -> Finding:
        return Finding(statement.source, statement.sid, problem)

    for action in statement.actions:
        if action == "*" or action.endswith(":*"):
            yield finding(f'Action "{action}" grants a whole service')
    if "NotAction" in statement.body:
        yield finding("NotAction in an Allow grants everything not listed")
    if "NotResource" in statement.body:
        yield finding("NotResource in an Allow grants every other resource")
    if statement.kind != "identity" and render(statement.body.get("Principal")) in ('"*"', "*"):
        yield finding('Allow to Principal "*"')
    # In a key policy, Resource "*" means the key itself.
    if statement.kind == "key" or "*" not in statement.resources:
        return
    key = (statement.owner, statement.sid or "")
    if key not in WILDCARD_RESOURCE_EXCEPTIONS:
        yield finding('Resource "*" where an ARN or prefix can be named')


def _managed_policy_findings(template: dict[str, Any]) -> Iterator[Finding]:
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in resource["Properties"].get("ManagedPolicyArns", []):
            name = render(arn).rsplit("/", 1)[-1]
            if (logical_id, name) not in REVIEWED_MANAGED_POLICIES:
                yield Finding(logical_id, None, f"managed policy {name} is not a reviewed one")


# ------------------------------------------------------------------ analyst -> identifiable data


def _identifiable_object_keys() -> list[str]:
    keys = [
        f"${{LakePrefix}}/{zone}/clinical/vs/data/part-0.parquet" for zone in IDENTIFIABLE_ZONES
    ]
    return [
        *(f"${{LakeBucket.Arn}}/{key}" for key in keys),
        *(f"arn:${{AWS::Partition}}:s3:::${{LakeBucket}}/{key}" for key in keys),
    ]


def _identifiable_catalog_arns() -> list[str]:
    base = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}"
    names = [f"${{GlueDatabasePrefix}}{zone}" for zone in IDENTIFIABLE_ZONES]
    return [
        *(f"{base}:database/{name}" for name in names),
        *(f"{base}:table/{name}/clinical_vs" for name in names),
    ]


def _mentions_identifiable(text: str) -> bool:
    return any(zone in text.lower() for zone in IDENTIFIABLE_ZONES)


def _reaches(resources: list[str], samples: list[str]) -> bool:
    return any(
        _mentions_identifiable(resource) or any(fnmatchcase(s, resource) for s in samples)
        for resource in resources
    )


def _lists_identifiable(statement: PolicyStatement) -> bool:
    if not any(r == "*" or r.endswith("LakeBucket.Arn}") for r in statement.resources):
        return False
    conditions = statement.body.get("Condition", {})
    prefixes = [
        render(p)
        for operator in conditions.values()
        for key, values in operator.items()
        if key == "s3:prefix"
        for p in as_list(values)
    ]
    if not prefixes:
        return True
    listed = [f"${{LakePrefix}}/{zone}/clinical/vs/" for zone in IDENTIFIABLE_ZONES]
    return any(_mentions_identifiable(p) or fnmatchcase(s, p) for p in prefixes for s in listed)


def _analyst_statement_problems(statement: PolicyStatement) -> Iterator[str]:
    services = {a.split(":", 1)[0].lower() if ":" in a else "*" for a in statement.actions}
    every = "*" in services
    object_actions = [a for a in statement.actions if a.lower() != "s3:listbucket"]
    on_s3 = every or "s3" in services
    if on_s3 and object_actions and _reaches(statement.resources, _identifiable_object_keys()):
        yield "S3 access to an identifiable zone of the lake"
    if on_s3 and _lists_identifiable(statement):
        yield "lists an identifiable zone of the lake"
    if (every or "glue" in services) and _reaches(
        statement.resources, _identifiable_catalog_arns()
    ):
        yield "Glue access to an identifiable database"
    if every or any(
        a.lower().startswith("lakeformation:") and a.lower() != "lakeformation:getdataaccess"
        for a in statement.actions
    ):
        yield "may change Lake Formation permissions"
    if every or any(fnmatchcase(hop, a.lower()) for a in statement.actions for hop in _ROLE_HOPS):
        yield "may assume or pass another role"


def _grants_to_analyst(statement: PolicyStatement) -> bool:
    if statement.kind == "identity":
        return ANALYST_ROLE in statement.roles
    principal = render(statement.body.get("Principal"))
    return ANALYST_ROLE in principal or principal in ('"*"', "*")


def _analyst_findings(
    template: dict[str, Any], statements: list[PolicyStatement]
) -> Iterator[Finding]:
    for statement in statements:
        if statement.allows and statement.kind != "key" and _grants_to_analyst(statement):
            for problem in _analyst_statement_problems(statement):
                yield Finding(statement.source, statement.sid, problem)
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in _LAKE_FORMATION_GRANTS and _grants_identifiable_to_analyst(props):
            yield Finding(logical_id, None, "Lake Formation grant to the analyst role")
        trust = render(props.get("AssumeRolePolicyDocument"))
        if logical_id != ANALYST_ROLE and ANALYST_ROLE in trust:
            yield Finding(logical_id, None, "trusts the analyst role")


def _grants_identifiable_to_analyst(props: dict[str, Any]) -> bool:
    """A grant on a curated or quarantine database, or on the whole catalog or a location."""
    if ANALYST_ROLE not in render(props.get("Principal", props.get("DataLakePrincipal"))):
        return False
    granted = render(props.get("Resource"))
    on_identifiable = _mentions_identifiable(granted) or any(
        db in granted for db in _IDENTIFIABLE_DATABASES
    )
    wide = any(k in props.get("Resource", {}) for k in ("Catalog", "DataLocation"))
    return on_identifiable or wide
