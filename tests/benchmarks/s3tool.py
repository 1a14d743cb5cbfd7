"""Small S3 chores of the S3 scenario, run as a child (the driver never imports boto3):

    python -m tests.benchmarks.s3tool create ENDPOINT BUCKET
    python -m tests.benchmarks.s3tool check ENDPOINT BUCKET PREFIX SIZE SHA256
        exit 0 when an object under PREFIX has SIZE bytes, SHA256 in its metadata and as its bytes' hash
    python -m tests.benchmarks.s3tool delete ENDPOINT BUCKET KEY

Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import hashlib
import sys


def main(argv: list[str]) -> int:
    import boto3

    command, endpoint, bucket, *rest = argv
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    if command == "create":
        client.create_bucket(Bucket=bucket)
        return 0
    if command == "delete":
        client.delete_object(Bucket=bucket, Key=rest[0])
        return 0
    prefix, size, sha256 = rest
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            if item["Size"] != int(size):
                continue
            head = client.head_object(Bucket=bucket, Key=item["Key"])
            digest = hashlib.sha256()
            for chunk in client.get_object(Bucket=bucket, Key=item["Key"])["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
            if head.get("Metadata", {}).get("sha256") == sha256 == digest.hexdigest():
                return 0
    print(f"no object of {size} bytes and sha256 {sha256} under {prefix}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
