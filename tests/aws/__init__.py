"""The AWS back ends (SageMaker endpoints, AWS Batch workers, the CloudFormation template) against moto."""
