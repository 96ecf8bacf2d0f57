"""The GPU kit (benchmarks/gpu_kit.sh + gpu_kit.py): its completeness check, repack, manifest, and the torch API list.

What is tested here, on CPU and without the network:
- the real kit list (benchmarks/gpu_kit.txt) is complete for both engines: the completeness check runs on the list's
  distributions as installed in this environment (the list pins requirements.lock's versions, so their modules and
  declared requirements are the wheels'); only the wheel files themselves are not downloaded;
- the checker itself on small synthetic kits (a missing module, a guarded import, a lazy import, an unmet or
  ignored requirement, a wrong version, a scanned package's own imports);
- repack and manifest (the 64 MiB limit) on synthetic wheels;
- every torch name the project's code uses is in benchmarks/torch_api.txt (verified against torch 2.11's sources),
  and the verifier itself on a synthetic torch tree.
Building the real kit (pip download from the registry + the ColossalAI sdist build, ~1.5 min) is the benchmark path:
`bash benchmarks/gpu_kit.sh DIR` runs the same check on the downloaded wheels and fails when incomplete or too big.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_kit", REPO / "benchmarks" / "gpu_kit.py")
gk = importlib.util.module_from_spec(spec)
sys.modules["gpu_kit"] = gk
spec.loader.exec_module(gk)


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes | str], requires=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires) + "\n"
    members = {**files, f"{dist}.dist-info/METADATA": meta,
               f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    rows = []
    with zipfile.ZipFile(path, "w") as z:
        for m, data in members.items():
            raw = data.encode() if isinstance(data, str) else data
            z.writestr(m, raw)
            digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
            rows.append(f"{m},sha256={digest},{len(raw)}")
        rows.append(f"{dist}.dist-info/RECORD,,")
        z.writestr(f"{dist}.dist-info/RECORD", "\n".join(rows) + "\n")
    return path


@pytest.fixture()
def tiny(tmp_path):
    """A synthetic project (src/cpt/...), image list and kit list; the kit folder starts empty."""
    src = tmp_path / "repo" / "src" / "cpt"
    (src / "train").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "train" / "__init__.py").write_text("")
    (src / "train" / "entry.py").write_text(
        "import json\nimport numpy\nfrom cpt.train import helper\n"
        "try:\n    import flash_attn\nexcept ImportError:\n    flash_attn = None\n"
        "def run():\n    import colossalai.booster\n    return helper.go()\n")
    (src / "train" / "helper.py").write_text("def go():\n    import fancy\n    return fancy.x\n")
    image = tmp_path / "image.txt"
    image.write_text("torch 2.11.0 torch listed\nnumpy - numpy implied\n")
    kit_list = tmp_path / "kit.txt"
    kit_list.write_text("common fancy==1.0\n"
                        "colossalai colossalai==0.5.0 scan ignore:ray\n")
    kit = tmp_path / "kit"
    make_wheel(kit / "common", "fancy", "1.0", {"fancy/__init__.py": "x = 1\n"})
    make_wheel(kit / "colossalai", "colossalai", "0.5.0",
               {"colossalai/__init__.py": "import einops\n",
                "colossalai/booster/__init__.py": "from .booster import Booster\n",
                "colossalai/booster/booster.py": "import numpy\nclass Booster: pass\n"
                                                 "def later():\n    import never_needed\n"},
               requires=["ray", "numpy", "torch<=2.5.1"])
    return {"repo": tmp_path / "repo", "image": image, "list": kit_list, "kit": kit, "tmp": tmp_path}


def run_check(t, **kw):
    return gk.check(t["kit"], repo=t["repo"], kit_list=t["list"], image_list=t["image"],
                    entry_modules=("cpt.train.entry",), entry_files=(), **kw)


def test_the_kit_list_is_complete_for_both_engines():
    rep = gk.check(None)  # the list's distributions as installed here, in the lanes the list gives them
    assert rep["ok"], json.dumps(rep, indent=1)[:3000]
    torch_e, colo = rep["engines"]["torch"], rep["engines"]["colossalai"]
    # the torch engine runs on the image's transformers, without ColossalAI; ColossalAI on the kit's 4.51.3
    assert torch_e["third_party"]["transformers"] == "image:transformers"
    assert torch_e["absent_by_design"] == ["colossalai"] and "colossalai" not in torch_e["third_party"]
    assert colo["third_party"]["transformers"] == "kit:transformers"
    assert colo["third_party"]["colossalai"] == "kit:colossalai"
    # what the project and ColossalAI's module-level imports need, seen by the scan (not just declared)
    for top in ("datasets", "jsonschema", "orjson", "bitsandbytes", "galore_torch", "einops"):
        assert top in colo["third_party"], top
    assert colo["third_party"]["torch"] == "image:torch"


def test_kit_versions_are_the_locked_ones():
    lock = {gk.norm(k): v for k, v in (line.split("==", 1) for line in
                                       (REPO / "requirements.lock").read_text().splitlines() if "==" in line)}
    for it in gk.read_kit_list():
        assert lock.get(gk.norm(it.name)) == it.version, (it.name, it.version, lock.get(gk.norm(it.name)))
    listed = {gk.norm(n) for n in gk.read_image_list()}
    assert not listed & {gk.norm(it.name) for it in gk.read_kit_list() if it.lane == "common"}


def test_checker_finds_a_missing_module_with_its_importer(tiny):
    (tiny["kit"] / "common" / "fancy-1.0-py3-none-any.whl").unlink()
    tiny["list"].write_text("colossalai colossalai==0.5.0 scan ignore:ray\n")
    rep = run_check(tiny)
    assert not rep["ok"]
    for engine in ("torch", "colossalai"):
        missing = rep["engines"][engine]["missing"]
        assert missing["fancy"] == ["cpt.train.helper:2"]  # a lazy import of the project counts
        assert "flash_attn" not in missing  # guarded by except ImportError: optional
    # a scanned package's module-level imports count, its lazy ones do not
    assert "einops" in rep["engines"]["colossalai"]["missing"]
    assert "never_needed" not in rep["engines"]["colossalai"]["missing"]
    # the torch engine has no ColossalAI by design
    assert rep["engines"]["torch"]["absent_by_design"] == ["colossalai"]
    assert "colossalai" not in rep["engines"]["torch"]["missing"]


def test_checker_passes_once_the_kit_has_it_and_checks_requirements(tiny):
    make_wheel(tiny["kit"] / "colossalai", "einops", "0.8.2", {"einops/__init__.py": ""})
    tiny["list"].write_text(tiny["list"].read_text() + "colossalai einops==0.8.2\n")
    rep = run_check(tiny)
    # torch<=2.5.1 is declared and not met by the image's 2.11.0: caught unless ignored
    assert rep["engines"]["colossalai"]["requirements"] == [
        "colossalai 0.5.0 requires torch<=2.5.1; the image has torch 2.11.0"]
    tiny["list"].write_text(tiny["list"].read_text().replace("ignore:ray", "ignore:ray,torch"))
    rep = run_check(tiny)
    assert rep["ok"], rep
    assert rep["engines"]["colossalai"]["third_party"]["fancy"] == "kit:fancy"


def test_image_ranges_only_break_caps_and_availability_guards_are_optional(tmp_path):
    image = {gk.norm(n): gk.ImagePkg(n, v, (n,), "implied") for n, v in
             (("huggingface-hub", ">=1.5.0,<2.0"), ("tqdm", ">=4.60"), ("torch", "2.11.0+cu130"))}
    w = gk.Wheel(None, "hf451", "transformers", "4.51.3",
                 ["huggingface-hub<1.0,>=0.30.0", "tqdm>=4.66.3", "torch>=2.0", "jax; extra == 'flax'",
                  "colorama; sys_platform == 'win32'"], {}, set())
    extras: list = []
    assert gk._requirement_problems(w, {}, image, set(), extras) == [
        "transformers 4.51.3 requires huggingface-hub<1.0,>=0.30.0; the image has huggingface-hub >=1.5.0,<2.0"]
    src = ("if config.NIBABEL_AVAILABLE:\n    import nibabel\nif is_flash_attn_2_available():\n    import flash_attn\n"
           "if os.environ.get('X'):\n    import needed\n")
    imps = gk.imports_of(src, "m", False)
    assert {i.module: i.optional for i in imps} == {"nibabel": True, "flash_attn": True, "needed": False}


def test_checker_flags_a_wheel_that_is_not_the_listed_version(tiny):
    tiny["list"].write_text("common fancy==2.0\ncolossalai colossalai==0.5.0 scan ignore:ray,torch\n")
    rep = run_check(tiny)
    assert rep["problems"] == ["kit.txt:1: fancy: the kit has 1.0 in lane common, the list says 2.0 in lane common"]
    assert not rep["ok"]


def test_an_entry_point_that_moved_fails_the_check(tiny):
    rep = gk.check(tiny["kit"], repo=tiny["repo"], kit_list=tiny["list"], image_list=tiny["image"],
                   entry_modules=("cpt.train.entry", "cpt.train.gone"), entry_files=("benchmarks/x.py",))
    assert not rep["ok"]
    assert any("entry points not found" in p and "cpt.train.gone" in p and "benchmarks/x.py" in p
               for p in rep["problems"]), rep["problems"]


def test_unlisted_lane_and_unpinned_entries_are_errors(tmp_path):
    bad = tmp_path / "k.txt"
    bad.write_text("common fancy\n")
    with pytest.raises(SystemExit, match="k.txt:1: 'fancy': pin an exact version"):
        gk.read_kit_list(bad)
    bad.write_text("gpu fancy==1\n")
    with pytest.raises(SystemExit, match="k.txt:1: unknown lane 'gpu'"):
        gk.read_kit_list(bad)


def test_repack_keeps_only_the_listed_native_libraries(tmp_path):
    whl = make_wheel(tmp_path, "bnb", "1.0", {"bnb/__init__.py": "", "bnb/libbnb_cuda118.so": b"\0" * 1000,
                                              "bnb/libbnb_cuda130.so": b"\1" * 10, "bnb/libbnb_cpu.so": b"\2"})
    out = gk.repack(whl, ["bnb/libbnb_cuda130.so", "bnb/libbnb_cpu.so"])
    assert out["dropped"] == ["bnb/libbnb_cuda118.so"]
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        record = z.read("bnb-1.0.dist-info/RECORD").decode()
    assert "bnb/libbnb_cuda118.so" not in names and "bnb/libbnb_cuda130.so" in names
    assert "libbnb_cuda118" not in record and "bnb/libbnb_cuda130.so,sha256=" in record
    with pytest.raises(SystemExit, match="not in the wheel"):
        gk.repack(whl, ["bnb/libbnb_rocm.so"])


def test_manifest_records_every_file_and_enforces_the_limit(tiny):
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_kit.py"), "manifest", str(tiny["kit"]),
                        "--limit-mib", "0.001"], capture_output=True, text=True)
    assert r.returncode == 1 and "over the 0.001 MiB limit" in r.stderr
    doc = json.loads((tiny["kit"] / "manifest.json").read_text())
    assert doc["wheels"] == 2 and doc["total_bytes"] == sum(f["size"] for f in doc["files"])
    fancy = next(f for f in doc["files"] if f.get("name") == "fancy")
    assert fancy["version"] == "1.0" and fancy["lane"] == "common"
    assert fancy["sha256"] == hashlib.sha256((tiny["kit"] / fancy["path"]).read_bytes()).hexdigest()
    assert gk.manifest(tiny["kit"], 64)["total_bytes"] < 64 * 2**20


# ---------------------------------------------------------------------------------------------- torch API
def test_every_torch_name_the_code_uses_was_verified_against_torch_2_11():
    used = gk.torch_names()
    verified = gk.read_api_list()
    new = sorted(set(used) - verified)
    assert not new, (
        f"torch names not yet verified against the GPU image's torch 2.11: {new} (used at "
        f"{[used[n][0] for n in new]}). Verify: pip download --no-deps --only-binary=:all: --python-version 3.12 "
        f"--platform macosx_11_0_arm64 torch==2.11.0 -d /tmp/t211 && python benchmarks/gpu_kit.py torch-api verify "
        f"--against /tmp/t211/torch-2.11.0-*.whl --write")
    assert "torch.distributed.all_reduce" in used and "torch.bfloat16" in used  # the scan sees aliases and from-imports
    assert "torch.distributed.fsdp.fully_shard" in verified  # planned for the torch engine, verified ahead
    text = gk.TORCH_API.read_text()
    assert "# MISSING" not in text and "torch-2.11.0-" in text


def test_the_verifier_finds_what_a_release_lacks(tmp_path):
    root = tmp_path / "torch"
    (root / "distributed" / "fsdp").mkdir(parents=True)
    (root / "_C").mkdir()
    (root / "__init__.py").write_text("from torch._C import *\nfrom .functional import *\n")
    (root / "functional.py").write_text("def einsum(*a):\n    pass\n")
    (root / "_C" / "__init__.pyi").write_text("bfloat16: dtype\ndef zeros(*size) -> Tensor: ...\n")
    (root / "distributed" / "__init__.py").write_text("from .c10d import *\n")
    (root / "distributed" / "c10d.py").write_text("def all_reduce(t):\n    pass\n")
    (root / "distributed" / "fsdp" / "__init__.py").write_text("from ._impl import fully_shard\n")
    tree = gk.TorchTree(root)
    verdict = gk.verify_names(["torch.einsum", "torch.bfloat16", "torch.zeros", "torch.distributed.all_reduce",
                               "torch.distributed.fsdp.fully_shard", "torch.distributed.fsdp.DataParallelMeshDims",
                               "torch.distributed.tensor.DTensor", "torch.nn"], tree)
    assert {n for n, why in verdict.items() if why} == {
        "torch.distributed.fsdp.DataParallelMeshDims", "torch.distributed.tensor.DTensor", "torch.nn"}
    assert verdict["torch.distributed.fsdp.DataParallelMeshDims"] == \
        "torch.distributed.fsdp has no 'DataParallelMeshDims'"


def test_resolve_on_the_installed_torch():
    missing, needs = gk.resolve_names(["torch.distributed.all_reduce", "torch.nn.functional.cross_entropy",
                                       "torch.no_such_function", "torch.distributed.no_such_module.x"])
    assert set(missing) == {"torch.no_such_function", "torch.distributed.no_such_module.x"}
    assert missing["torch.no_such_function"].startswith("AttributeError")
    assert needs == {}
