"""deploy/aws/spotbot.yaml: cfn-lint passes (informational checks included), and the properties
the project promises hold: encryption, HTTPS only, no public buckets, least-privilege roles.

The least-privilege rules are read from the policies themselves, the way cfn-nag reads a template:
every Allow statement of every role, inline policy, bucket policy and the domain's access policy.
`violations` returns what breaks them, and a test plants each kind of fault to show it is caught.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "spotbot.yaml"
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")
ARN = "arn:${AWS::Partition}"
IN = "${AWS::Region}:${AWS::AccountId}"

# actions that take no resource-level permission: "*" is the only resource AWS accepts for them
NO_RESOURCE_LEVEL = {"ecr:GetAuthorizationToken", "batch:DescribeJobQueues", "batch:DescribeComputeEnvironments",
                     "batch:DescribeJobDefinitions", "batch:DescribeJobs", "cloudwatch:PutMetricData"}
# every resource with a wildcard, and why no named ARN can take its place
WILDCARDS = {
    "${InputBucket.Arn}/*": "the input files: their keys are the user's",
    "${OutputBucket.Arn}/*": "the results: their keys are made from the input keys",
    "${InputBucket.Arn}/models/*": "model archives a bot registration names",
    f"{ARN}:es:{IN}:domain/${{ProjectName}}/${{IndexPrefix}}*": "the indices spotbot makes under its prefix",
    f"{ARN}:es:{IN}:domain/${{ProjectName}}/*": "the operator administers the domain named after the project",
    f"{ARN}:batch:{IN}:job/*": "Batch job ids are made by Batch at submission",
    f"{ARN}:batch:{IN}:job-definition/${{ProjectName}}-*": "job definitions spotbot registers per bot",
    f"{ARN}:logs:{IN}:log-group:/aws/batch/job:*": "the log streams of Batch jobs",
    f"{ARN}:logs:{IN}:log-group:/aws/sagemaker/Endpoints/${{EndpointName}}:*": "the streams of one endpoint",
}
# the grant on every sub-resource of the domain: the operator's alone
DOMAIN_WIDE = f"{ARN}:es:{IN}:domain/${{ProjectName}}/*"
# which role may be passed to which services: each only to what runs as it
PASSED_TO = {"SageMakerRole": {"sagemaker.amazonaws.com"},
             "WorkerRole": {"ecs-tasks.amazonaws.com", "batch.amazonaws.com"}}
# AWS managed policies allowed, on the roles AWS Batch itself needs
MANAGED = {"BatchInstanceRole": "AmazonEC2ContainerServiceforEC2Role", "BatchServiceRole": "AWSBatchServiceRole"}


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def statements(resource: dict) -> list[dict]:
    return [s for policy in resource["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def resources(template: dict) -> dict[str, dict]:
    """Every resource by logical id; those of a Fn::ForEach loop under their id template (Name&{Item})."""
    found = {}
    for name, value in template["Resources"].items():
        if name.startswith("Fn::ForEach::"):
            found.update(value[2])
        else:
            found[name] = value
    return found


def text(value) -> str:
    """An ARN as written: Fn::Sub's string, ${X.Arn} for a Fn::GetAtt, ${X} for a Ref."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
    if "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if "Ref" in value:
        return "${" + value["Ref"] + "}"
    raise AssertionError(f"unexpected intrinsic {value}")


def listed(value) -> list:
    return value if isinstance(value, list) else [value]


def policies(template: dict) -> list[tuple[str, str | None, dict]]:
    """(where, role the statement grants to, statement) for every statement of every policy in the template."""
    out = []
    for name, resource in resources(template).items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            out += [(f"{name}/{p['PolicyName']}", name, s) for p in props.get("Policies", [])
                    for s in p["PolicyDocument"]["Statement"]]
        elif kind in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            role = text(props["RoleName"]).strip("${}") if "RoleName" in props else None
            out += [(name, role, s) for s in props["PolicyDocument"]["Statement"]]
        elif kind == "AWS::S3::BucketPolicy":
            out += [(name, None, s) for s in props["PolicyDocument"]["Statement"]]
        elif kind == "AWS::OpenSearchService::Domain":
            out += [(f"{name}/AccessPolicies", None, s) for s in props.get("AccessPolicies", {}).get("Statement", [])]
    return out


def violations(template: dict) -> list[str]:
    """What breaks least privilege, one line per fault (empty when the template keeps every rule)."""
    found = []
    everything = resources(template)
    for where, role, statement in policies(template):
        sid = f"{where}:{statement.get('Sid', '')}"
        if statement["Effect"] != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            found.append(f"{sid}: NotAction/NotResource in an Allow grants everything else")
        actions = [str(a) for a in listed(statement.get("Action", []))]
        found += [f"{sid}: wildcard action {a}" for a in actions if "*" in a]
        principal = statement.get("Principal")
        if principal is not None and ("*" in listed(principal) or "*" in listed(principal.get("AWS", []))):
            found.append(f"{sid}: allows any principal")
        for resource in map(text, listed(statement.get("Resource", []))):
            if resource == "*":
                if not set(actions) <= NO_RESOURCE_LEVEL:
                    found.append(f"{sid}: resource * for {sorted(set(actions) - NO_RESOURCE_LEVEL)}, "
                                 "which take a named resource")
                if "cloudwatch:PutMetricData" in actions and "Condition" not in statement:
                    found.append(f"{sid}: PutMetricData to every namespace")
            elif "*" in resource and resource not in WILDCARDS:
                found.append(f"{sid}: wildcard resource {resource} where a named ARN could stand")
            elif resource == DOMAIN_WIDE and not (sid.endswith(":Indices") and role == "OperatorRole"
                                                  or sid.endswith("AccessPolicies:Operator")):
                found.append(f"{sid}: the whole domain, beyond the operator")
        if "iam:PassRole" in actions:
            passed = [text(r) for r in listed(statement.get("Resource", []))]
            services = set(listed(statement.get("Condition", {}).get("StringEquals", {}).get("iam:PassedToService", [])))
            if actions != ["iam:PassRole"] or len(passed) != 1 or not passed[0].endswith(".Arn}"):
                found.append(f"{sid}: iam:PassRole must stand alone, on one named role")
            elif not services or not services <= PASSED_TO.get(passed[0][2:-5], set()):
                found.append(f"{sid}: {passed[0]} passed to {sorted(services) or 'any service'}")
        deletes = [a for a in actions if a.startswith("sagemaker:Delete")]
        creates = [a for a in actions if a.startswith("sagemaker:Create") or a == "sagemaker:AddTags"]
        condition = statement.get("Condition", {}).get("StringEquals", {})
        if deletes and condition.get("aws:ResourceTag/spotbot:managed") != "true":
            found.append(f"{sid}: {deletes} without the spotbot:managed resource tag condition")
        if creates and condition.get("aws:RequestTag/spotbot:managed") != "true":
            found.append(f"{sid}: {creates} without the spotbot:managed request tag condition")
    for name, resource in everything.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for arn in map(text, props.get("ManagedPolicyArns", [])):
                if not arn.endswith("/" + MANAGED.get(name, "\0")):
                    found.append(f"{name}: managed policy {arn}")
        if resource["Type"] in ("AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey"):
            found.append(f"{name}: long-lived IAM users, groups or keys")
    return found


def worker_and_operator_domain_grants(template: dict) -> dict[str, set[str]]:
    domain = template["Resources"]["Domain"]["Properties"]
    return {statement["Principal"]["AWS"]["Fn::GetAtt"][0]: {text(r) for r in listed(statement["Resource"])}
            for statement in domain["AccessPolicies"]["Statement"]}


def test_cfn_lint_passes_with_informational_checks():
    result = subprocess.run([CFN_LINT, "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_is_a_check_that_can_fail(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Type: AWS::OpenSearchService::Domain",
                                                   "Type: AWS::OpenSearchService::Domian"))
    result = subprocess.run([CFN_LINT, "--", str(broken)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Domian" in result.stdout


def test_every_grant_is_least_privilege(template):
    assert violations(template) == []
    # and the rules read something: the template has the statements they judge
    where = {where for where, _, _ in policies(template)}
    assert {"Domain/AccessPolicies", "WorkerRole/spotbot-worker", "OperatorRole/spotbot-operator",
            "EndpointPolicy&{EndpointName}", "PullPolicy&{Repository}", "InputBucketPolicy"} <= where


@pytest.mark.parametrize("fault, caught", [
    ("worker grant on the whole domain", "AccessPolicies:Workers: the whole domain"),
    ("PassRole without a service condition", "PassSageMakerRole: ${SageMakerRole.Arn} passed to any service"),
    ("PassRole to every role", "PassWorkerRole: iam:PassRole must stand alone, on one named role"),
    ("SageMaker passed to Batch", "PassSageMakerRole: ${SageMakerRole.Arn} passed to ['batch.amazonaws.com']"),
    ("wildcard action", "wildcard action s3:*"),
    ("repository wildcard", "wildcard resource arn:${AWS::Partition}:ecr:"),
    ("resource * on a named action", "resource * for ['sagemaker:InvokeEndpoint']"),
    ("untagged delete", "without the spotbot:managed resource tag condition"),
    ("any principal", "allows any principal"),
    ("an admin policy", "managed policy arn:aws:iam::aws:policy/AdministratorAccess"),
])
def test_least_privilege_rules_catch_each_planted_fault(template, fault, caught):
    bad = copy.deepcopy(template)
    everything = resources(bad)
    operator = {s.get("Sid"): s for s in statements(everything["OperatorRole"])}
    worker = everything["WorkerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    if fault == "worker grant on the whole domain":
        domain = everything["Domain"]["Properties"]["AccessPolicies"]["Statement"][0]
        domain["Resource"] = {"Fn::Sub": DOMAIN_WIDE}
    elif fault == "PassRole without a service condition":
        del operator["PassSageMakerRole"]["Condition"]
    elif fault == "PassRole to every role":
        operator["PassWorkerRole"]["Resource"] = {"Fn::Sub": f"{ARN}:iam::${{AWS::AccountId}}:role/*"}
    elif fault == "SageMaker passed to Batch":
        operator["PassSageMakerRole"]["Condition"]["StringEquals"]["iam:PassedToService"] = "batch.amazonaws.com"
    elif fault == "wildcard action":
        worker[0]["Action"] = "s3:*"
    elif fault == "repository wildcard":
        pull = everything["PullPolicy&{Repository}"]["Properties"]["PolicyDocument"]["Statement"][0]
        pull["Resource"] = {"Fn::Sub": f"{ARN}:ecr:{IN}:repository/*"}
    elif fault == "resource * on a named action":
        invoke = everything["InvokePolicy&{EndpointName}"]["Properties"]["PolicyDocument"]["Statement"][0]
        invoke["Resource"] = "*"
    elif fault == "untagged delete":
        delete = everything["EndpointPolicy&{EndpointName}"]["Properties"]["PolicyDocument"]["Statement"][2]
        del delete["Condition"]
    elif fault == "any principal":
        bad["Resources"]["Domain"]["Properties"]["AccessPolicies"]["Statement"][1]["Principal"] = {"AWS": "*"}
    elif fault == "an admin policy":
        everything["WorkerRole"]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AdministratorAccess"]
    assert any(caught in line for line in violations(bad)), violations(bad)


def test_the_domain_is_encrypted_https_only_and_grants_each_role_what_its_own_policy_names(template):
    domain = template["Resources"]["Domain"]["Properties"]
    assert domain["EncryptionAtRestOptions"] == {"Enabled": True}
    assert domain["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert domain["DomainEndpointOptions"]["EnforceHTTPS"] is True
    assert domain["DomainEndpointOptions"]["TLSSecurityPolicy"] == "Policy-Min-TLS-1-2-2019-07"
    for statement in domain["AccessPolicies"]["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(action.startswith("es:ESHttp") for action in statement["Action"])
    # within one account the domain's grant alone lets a request in: it must be no wider than the role's own
    granted = worker_and_operator_domain_grants(template)
    roles = resources(template)
    worker_own = {text(r) for s in statements(roles["WorkerRole"]) if s["Sid"] == "WriteIndices" for r in s["Resource"]}
    operator_own = {text(s["Resource"]) for s in statements(roles["OperatorRole"]) if s["Sid"] == "Indices"}
    assert granted == {"WorkerRole": worker_own, "OperatorRole": operator_own}
    assert all(r.endswith(("/${IndexPrefix}*", "/_bulk", "/_mget")) for r in granted["WorkerRole"])


def test_buckets_block_public_access_are_encrypted_and_refuse_plain_http(template):
    resources_ = template["Resources"]
    for name in ("InputBucket", "OutputBucket"):
        props = resources_[name]["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        (deny,) = resources_[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Action"] == "s3:*" and deny["Principal"] == "*"


def test_the_worker_role_reads_inputs_writes_outputs_invokes_named_endpoints_writes_indices_and_nothing_more(template):
    everything = resources(template)
    worker = statements(everything["WorkerRole"])
    granted = {s["Sid"]: (s["Action"], s["Resource"]) for s in worker}
    # GetObjectVersion: in a versioned bucket a worker reads exactly the version the scan recorded
    assert granted["ReadInputs"] == (["s3:GetObject", "s3:GetObjectVersion"], {"Fn::Sub": "${InputBucket.Arn}/*"})
    assert granted["WriteOutputs"] == ("s3:PutObject", {"Fn::Sub": "${OutputBucket.Arn}/*"})
    assert set(granted) == {"ReadInputs", "WriteOutputs", "WriteIndices"}
    # endpoint invocation: one policy per named endpoint, each on that endpoint's ARN alone
    loop = template["Resources"]["Fn::ForEach::EndpointInvocations"]
    assert loop[1] == {"Ref": "EndpointNames"}
    (invoke,) = loop[2]["InvokePolicy&{EndpointName}"]["Properties"]["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    assert invoke["Resource"]["Fn::Sub"].endswith(":endpoint/${EndpointName}")
    # nothing else grants to the worker
    extra = [name for name, r in everything.items() if r["Type"] == "AWS::IAM::RolePolicy"
             and r["Properties"]["RoleName"] == {"Ref": "WorkerRole"}]
    assert extra == ["InvokePolicy&{EndpointName}"]
    assert "ManagedPolicyArns" not in everything["WorkerRole"]["Properties"]


def test_the_operator_manages_only_the_named_endpoints_and_only_what_spotbot_tagged(template):
    (policy,) = [r for name, r in resources(template).items() if name == "EndpointPolicy&{EndpointName}"]
    assert policy["Properties"]["RoleName"] == {"Ref": "OperatorRole"}
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert {text(r).rsplit(":", 1)[1] for r in statement["Resource"]} == \
            {"model/${EndpointName}", "endpoint-config/${EndpointName}", "endpoint/${EndpointName}"}
    # and nowhere else does the operator touch SageMaker
    operator = statements(resources(template)["OperatorRole"])
    assert not [s for s in operator if any(str(a).startswith("sagemaker:") for a in listed(s["Action"]))]


def test_batch_runs_on_spot_with_its_own_roles(template):
    resources_ = template["Resources"]
    compute = resources_["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert (compute["Type"], compute["AllocationStrategy"]) == ("SPOT", "SPOT_CAPACITY_OPTIMIZED")
    assert compute["InstanceRole"] == {"Fn::GetAtt": ["BatchInstanceProfile", "Arn"]}
    assert resources_["ComputeEnvironment"]["Properties"]["ServiceRole"] == {"Fn::GetAtt": ["BatchServiceRole", "Arn"]}
    assert resources_["JobQueue"]["Properties"]["ComputeEnvironmentOrder"][0]["ComputeEnvironment"] == \
        {"Ref": "ComputeEnvironment"}
    group = resources_["WorkerSecurityGroup"]["Properties"]
    assert not group.get("SecurityGroupIngress")
    assert [(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in group["SecurityGroupEgress"]] == \
        [("tcp", 443, 443)]
    repository = template["Resources"]["Fn::ForEach::Repositories"][2]["Repository&{Repository}"]["Properties"]
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    outputs = template["Outputs"]
    assert {"OpenSearchUrl", "InputBucket", "OutputBucket", "JobQueue", "WorkerRoleArn", "SageMakerRoleArn",
            "OperatorRoleArn", "Region"} <= set(outputs)
