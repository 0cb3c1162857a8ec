#!/usr/bin/env python3
"""Creates a blob container on Azurite (or any Blob endpoint in path style) with Shared Key auth.

esbackup's Azure target (object_store) cannot create containers; the benchmarks need one.
Standard library only.

Usage: azure-mkcontainer.py [--sas-url] ENDPOINT ACCOUNT KEY CONTAINER
  e.g. azure-mkcontainer.py http://127.0.0.1:10000 devstoreaccount1 Eby8… bench
An existing container is fine (409 ContainerAlreadyExists). With --sas-url it also prints a
service SAS URL of the container (read, add, create, write, delete, list; valid one day): the
way rclone 1.60's azureblob backend can reach an emulator on any address.
"""

import base64
import datetime
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.utils import formatdate

VERSION = "2021-08-06"


def sas_url(endpoint, account, key, container):
    """A service SAS (version 2018-11-09) for the container."""
    sv, sr, sp = "2018-11-09", "c", "racwdl"
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    st = (now - datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    se = (now + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    resource = f"/blob/{account}/{container}"
    # sp, st, se, resource, si, sip, spr, sv, sr, snapshot time, rscc, rscd, rsce, rscl, rsct
    to_sign = "\n".join([sp, st, se, resource, "", "", "", sv, sr, "", "", "", "", "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    query = urllib.parse.urlencode({"sv": sv, "sr": sr, "sp": sp, "st": st, "se": se, "sig": sig})
    return f"{endpoint}/{account}/{container}?{query}"


def main():
    args = sys.argv[1:]
    want_sas = args[:1] == ["--sas-url"]
    if want_sas:
        args = args[1:]
    if len(args) != 4:
        sys.exit(__doc__)
    endpoint, account, key, container = args
    path = f"/{account}/{container}"
    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": VERSION}
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    # Path-style (emulator) addressing: the resource is /<account><path>, path included.
    canonical_resource = f"/{account}{path}\nrestype:container"
    # VERB, then Content-Encoding, -Language, -Length (empty for 0), -MD5, Content-Type, Date,
    # If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range; then the rest.
    content_type = "application/octet-stream"  # urllib would add its own form type otherwise
    to_sign = "PUT\n" + "\n" * 4 + content_type + "\n" + "\n" * 6 + canonical_headers + canonical_resource
    sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
    req = urllib.request.Request(f"{endpoint}{path}?restype=container", method="PUT", data=b"")
    for k, v in headers.items():
        req.add_header(k, v)
    req.add_header("Content-Type", content_type)
    req.add_header("Authorization", f"SharedKey {account}:{sig}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        if not (e.code == 409 and "ContainerAlreadyExists" in body):
            sys.exit(f"azure-mkcontainer: PUT {path}: {e.code} {body[:500]}")
    if want_sas:
        print(sas_url(endpoint, account, key, container))


if __name__ == "__main__":
    main()
