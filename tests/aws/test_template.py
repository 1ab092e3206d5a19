"""deploy/aws/spotbot.yaml: cfn-lint passes (informational checks included), and the properties
the project promises hold: encryption, HTTPS only, no public buckets, least-privilege roles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "aws" / "spotbot.yaml"
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


def statements(resource: dict) -> list[dict]:
    return [s for policy in resource["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


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


def test_the_domain_is_encrypted_https_only_and_open_to_the_two_roles_only(template):
    domain = template["Resources"]["Domain"]["Properties"]
    assert domain["EncryptionAtRestOptions"] == {"Enabled": True}
    assert domain["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert domain["DomainEndpointOptions"]["EnforceHTTPS"] is True
    (statement,) = domain["AccessPolicies"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": [{"Fn::GetAtt": ["WorkerRole", "Arn"]}, {"Fn::GetAtt": ["OperatorRole", "Arn"]}]}
    assert all(action.startswith("es:ESHttp") for action in statement["Action"])


def test_buckets_block_public_access_and_refuse_plain_http(template):
    resources = template["Resources"]
    for name in ("InputBucket", "OutputBucket"):
        block = resources[name]["Properties"]["PublicAccessBlockConfiguration"]
        assert block == {"BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                         "RestrictPublicBuckets": True}
        (deny,) = resources[f"{name}Policy"]["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_worker_role_reads_inputs_writes_outputs_invokes_named_endpoints_writes_indices_and_nothing_more(template):
    resources = template["Resources"]
    worker = statements(resources["WorkerRole"])
    granted = {s["Sid"]: (s["Action"], s["Resource"]) for s in worker}
    # GetObjectVersion: in a versioned bucket a worker reads exactly the version the scan recorded
    assert granted["ReadInputs"] == (["s3:GetObject", "s3:GetObjectVersion"], {"Fn::Sub": "${InputBucket.Arn}/*"})
    assert granted["WriteOutputs"] == ("s3:PutObject", {"Fn::Sub": "${OutputBucket.Arn}/*"})
    assert set(granted) == {"ReadInputs", "WriteOutputs", "WriteIndices"}
    index_resources = [r["Fn::Sub"] for r in granted["WriteIndices"][1]]
    assert all(r.endswith(("/${IndexPrefix}*", "/_bulk")) for r in index_resources)
    # endpoint invocation: one policy per named endpoint, each on that endpoint's ARN alone
    loop = resources["Fn::ForEach::EndpointInvocations"]
    assert loop[1] == {"Ref": "EndpointNames"}
    (policy,) = loop[2].values()
    (invoke,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "sagemaker:InvokeEndpoint"
    assert invoke["Resource"]["Fn::Sub"].endswith(":endpoint/${EndpointName}")
    # no statement anywhere in the worker's grants names every action or every resource
    for statement in worker + [invoke]:
        assert statement["Action"] != "*" and statement["Resource"] != "*"
    assert "ManagedPolicyArns" not in resources["WorkerRole"]["Properties"]


def test_batch_runs_on_spot_with_its_own_roles(template):
    resources = template["Resources"]
    compute = resources["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert (compute["Type"], compute["AllocationStrategy"]) == ("SPOT", "SPOT_CAPACITY_OPTIMIZED")
    assert compute["InstanceRole"] == {"Fn::GetAtt": ["BatchInstanceProfile", "Arn"]}
    assert resources["ComputeEnvironment"]["Properties"]["ServiceRole"] == {"Fn::GetAtt": ["BatchServiceRole", "Arn"]}
    assert resources["JobQueue"]["Properties"]["ComputeEnvironmentOrder"][0]["ComputeEnvironment"] == \
        {"Ref": "ComputeEnvironment"}
    assert not resources["WorkerSecurityGroup"]["Properties"].get("SecurityGroupIngress")
    outputs = template["Outputs"]
    assert {"OpenSearchUrl", "InputBucket", "OutputBucket", "JobQueue", "WorkerRoleArn", "SageMakerRoleArn",
            "OperatorRoleArn", "Region"} <= set(outputs)
