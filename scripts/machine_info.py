"""The machine a benchmark ran on, for the JSON the benchmark scripts write (imported by
scripts/bench-vs-ort and scripts/footprint; docs/benchmarks.md labels every figure with it)."""
import datetime
import os
import platform

# (vendor, family, first model, last model) -> micro-architecture, for the CPUs edgebert is measured on.
_UARCH = [
    ("AuthenticAMD", 23, 0x00, 0x07, "Zen 1"),
    ("AuthenticAMD", 23, 0x08, 0x2F, "Zen 1/Zen+"),
    ("AuthenticAMD", 23, 0x30, 0xFF, "Zen 2"),
    ("AuthenticAMD", 25, 0x00, 0x0F, "Zen 3"),
    ("AuthenticAMD", 25, 0x10, 0x1F, "Zen 4"),
    ("AuthenticAMD", 25, 0x20, 0x5F, "Zen 3"),
    ("AuthenticAMD", 25, 0x60, 0xFF, "Zen 4"),
    ("AuthenticAMD", 26, 0x00, 0xFF, "Zen 5"),
]


def _cpuinfo():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def machine():
    """A dict: cpu (model name), uarch, family/model, the SIMD features that select kernels,
    logical CPUs, date (UTC), and a one-line label."""
    c = _cpuinfo()
    flags = set(c.get("flags", c.get("Features", "")).split())
    name = c.get("model name", platform.processor() or platform.machine())
    vendor = c.get("vendor_id", "")
    family = int(c["cpu family"]) if c.get("cpu family", "").isdigit() else None
    model = int(c["model"]) if c.get("model", "").isdigit() else None
    uarch = next((u for v, f, lo, hi, u in _UARCH
                  if v == vendor and f == family and model is not None and lo <= model <= hi), None)
    simd = [s for s, flag in [("AVX-512 VNNI", "avx512_vnni"), ("AVX-512", "avx512f"),
                              ("AVX-VNNI", "avx_vnni"), ("AVX2", "avx2"), ("FMA", "fma"),
                              ("NEON", "asimd"), ("dotprod", "asimddp"), ("i8mm", "i8mm")]
            if flag in flags]
    if platform.machine() == "x86_64" and "avx512f" not in flags:
        simd.append("no AVX-512")
    cpus = os.cpu_count()
    parts = [name]
    if uarch:
        parts.append(f"({uarch}, family {family} model {model})")
    label = " ".join(parts) + f", {cpus} CPUs, " + ", ".join(simd)
    return {"cpu": name, "uarch": uarch, "family": family, "model": model, "simd": simd,
            "cpus": cpus, "arch": platform.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "label": label}


if __name__ == "__main__":
    import json
    print(json.dumps(machine(), indent=1))
