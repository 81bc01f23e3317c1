"""What the benchmarks report as "device": the accelerator's kind, or the CPU model and core
count."""
import os


def device_name(jax) -> str:
  d = jax.devices()[0]
  if d.platform != "cpu":
    return d.device_kind
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    cpu = "cpu"
  return f"{cpu} ({os.cpu_count()} cores)"
