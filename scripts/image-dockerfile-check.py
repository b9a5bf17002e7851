#!/usr/bin/env python3
"""Checks that the Dockerfile and the image scripts/image.sh built describe the same image.

    image-dockerfile-check.py IMAGE_DIR    (IMAGE_DIR/oci is the OCI layout image.sh wrote)

Compared: the final stage's USER, ENTRYPOINT, CMD, EXPOSE and LABELs with the image config;
every file its COPY lines put in the image (the binaries, and the libraries of
scripts/image-libraries, which the Dockerfile must read) with the image's files; the
distroless base's user, working directory and environment with the config; the chart's default
image repository with the image's name. Exits 1 naming each difference.
"""
import gzip
import json
import os
import re
import sys
import tarfile

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
image_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(repo, "target", "image")
layout = os.path.join(image_dir, "oci")
problems = []


def blob(digest):
    return os.path.join(layout, "blobs", *digest.split(":", 1))


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def final_stage(path):
    """The Dockerfile's instructions after its last FROM: (KEYWORD, rest) with continuations joined."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    instructions = [tuple((l.strip().split(None, 1) + [""])[:2]) for l in logical]
    last_from = max(i for i, (k, _) in enumerate(instructions) if k.upper() == "FROM")
    return [(k.upper(), v.strip()) for k, v in instructions[last_from + 1 :]], text


def image_files(manifest):
    """Every path the image's layers hold, with its tar member (later layers win), and the
    text of /etc/passwd."""
    files, passwd = {}, ""
    for layer in manifest["layers"]:
        with gzip.open(blob(layer["digest"])) as raw, tarfile.open(fileobj=raw) as tar:
            for member in tar.getmembers():
                path = "/" + member.name.lstrip("./")
                files[path] = member
                if path == "/etc/passwd":
                    passwd = tar.extractfile(member).read().decode()
    return files, passwd


def expect(what, dockerfile, image):
    if dockerfile != image:
        problems.append(f"{what}: the Dockerfile says {dockerfile!r}, the image has {image!r}")


index = read_json(os.path.join(layout, "index.json"))
manifest_descriptor = index["manifests"][0]
manifest = read_json(blob(manifest_descriptor["digest"]))
config = read_json(blob(manifest["config"]["digest"]))["config"]
files, passwd = image_files(manifest)
stage, dockerfile_text = final_stage(os.path.join(repo, "Dockerfile"))

labels = {}
for keyword, rest in stage:
    if keyword == "USER":
        expect("USER", rest, config.get("User"))
    elif keyword == "ENTRYPOINT":
        expect("ENTRYPOINT", json.loads(rest), config.get("Entrypoint"))
    elif keyword == "CMD":
        expect("CMD", json.loads(rest), config.get("Cmd"))
    elif keyword == "EXPOSE":
        ports = {p if "/" in p else p + "/tcp" for p in rest.split()}
        expect("EXPOSE", sorted(ports), sorted(config.get("ExposedPorts", {})))
    elif keyword == "LABEL":
        for key, value in re.findall(r'([\w.\-]+)="([^"]*)"', rest):
            labels[key] = value
    elif keyword == "COPY":
        args = [a for a in rest.split() if not a.startswith("--")]
        source, destination = args[-2], args[-1]
        if destination.endswith("/"):
            continue  # a directory: the libraries, checked below from scripts/image-libraries
        member = files.get(destination)
        if member is None or not member.isfile():
            problems.append(f"COPY {source} {destination}: the image has no file {destination}")
        elif member.mode & 0o111 == 0:
            problems.append(f"{destination} is not executable in the image")
    elif keyword not in ("ARG",):
        problems.append(f"the final stage's {keyword} is not compared by {os.path.basename(__file__)}: teach it")
expect("LABEL", labels, config.get("Labels", {}))

# The libraries: the Dockerfile copies those of scripts/image-libraries onto its base.
if "image-libraries" not in dockerfile_text:
    problems.append("the Dockerfile does not read scripts/image-libraries")
with open(os.path.join(repo, "scripts", "image-libraries"), encoding="utf-8") as f:
    libraries = [l.strip() for l in f if l.strip() and not l.startswith("#")]
library_dirs = {os.path.dirname(p) for p in files if re.search(r"/lib[^/]*\.so", p)}
for library in libraries:
    if not any(os.path.join(d, library) in files for d in library_dirs):
        problems.append(f"scripts/image-libraries names {library}, the image has no such library")

# What the Dockerfile's base (distroless cc, :nonroot) brings and image.sh writes itself.
expect("the nonroot user (distroless :nonroot)", "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",
       next((l for l in passwd.splitlines() if l.startswith("nonroot:")), None))
expect("WorkingDir (distroless :nonroot)", "/home/nonroot", config.get("WorkingDir"))
expect("Env (distroless)",
       ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"], config.get("Env"))
for path in ("/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt", "/tmp", "/home/nonroot"):
    if path not in files:
        problems.append(f"the distroless base holds {path}, the image does not")
for shell in ("/bin/sh", "/bin/bash", "/usr/bin/sh", "/bin/busybox"):
    if shell in files:
        problems.append(f"the image holds a shell, {shell}; distroless does not")

# The chart's default image is this image's repository.
image_name = manifest_descriptor["annotations"]["io.containerd.image.name"]
with open(os.path.join(repo, "charts", "driftless", "values.yaml"), encoding="utf-8") as f:
    chart_repository = re.search(r"^image:\n(?:  .*\n)*?  repository: (\S+)", f.read(), re.M)
expect("the chart's image.repository", chart_repository and chart_repository.group(1),
       image_name.rsplit(":", 1)[0])

if problems:
    for problem in problems:
        print(f"image-dockerfile-check: {problem}", file=sys.stderr)
    sys.exit(1)
print(f"image-dockerfile-check: the Dockerfile and {image_name} describe the same image", file=sys.stderr)
