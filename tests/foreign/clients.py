"""The official clients, pointed at the test servers from scripts/test-servers, to fill a
bucket the way other tools do (tests/foreign/). Each reads the MASKSTORE_TEST_* variables
of .test-servers/env.

    s3("SEAWEEDFS") / s3("MOTO")  -> a boto3 S3 client
    aws_cli_env("SEAWEEDFS")      -> (argv prefix, env) to run the AWS CLI against it
    azure()                       -> an azure.storage.blob ContainerClient (Azurite)
    gcs()                         -> a google.cloud.storage Bucket (fake-gcs-server)
"""
import os


def env(name):
    return os.environ["MASKSTORE_TEST_" + name]


def s3(server):
    import boto3
    from botocore.config import Config

    access = os.environ.get(f"MASKSTORE_TEST_{server}_ACCESS_KEY", "moto-test-access")
    secret = os.environ.get(f"MASKSTORE_TEST_{server}_SECRET_KEY", "moto-test-secret-key")
    return boto3.client(
        "s3",
        endpoint_url=env(f"{server}_ENDPOINT"),
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}),
    )


def bucket(server):
    return env(f"{server}_BUCKET")


def aws_cli_env(server):
    """The AWS CLI's argv prefix and environment for `server`."""
    child = dict(os.environ)
    child["AWS_ACCESS_KEY_ID"] = os.environ.get(f"MASKSTORE_TEST_{server}_ACCESS_KEY", "moto-test-access")
    child["AWS_SECRET_ACCESS_KEY"] = os.environ.get(f"MASKSTORE_TEST_{server}_SECRET_KEY", "moto-test-secret-key")
    child["AWS_DEFAULT_REGION"] = "us-east-1"
    child.pop("AWS_PROFILE", None)
    return [env("AWS_CLI"), "--endpoint-url", env(f"{server}_ENDPOINT")], child


def azure():
    from azure.storage.blob import BlobServiceClient

    endpoint = env("AZURITE_ENDPOINT")
    service = BlobServiceClient(
        account_url=endpoint,
        credential={"account_name": env("AZURITE_ACCOUNT"), "account_key": env("AZURITE_ACCOUNT_KEY")},
    )
    return service.get_container_client(env("AZURITE_CONTAINER"))


def gcs():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="maskstore-test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": env("FAKE_GCS_ENDPOINT")},
    )
    return client.bucket(env("FAKE_GCS_BUCKET"))
