"""What a ``stop`` string costs: a chat answer ended by a stop string against the same answer ended by
``max_tokens`` at the same length, interleaved, on a running ``hybridformer serve`` (wall time and the server
process's CPU time, which contention on a shared machine disturbs less).

    hybridformer serve CKPT --port 8932 --api-key secret &
    python benchmarks/serve/stop_cost.py 8932 [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from openai import OpenAI

MESSAGES = [{"role": "user", "content": "List five fruits, numbered."}]


def server_cpu(port: str):
    """A function giving the CPU seconds used so far by the process listening on ``port``."""
    found = subprocess.run(["bash", "-c", f"ss -ltnp | grep :{port} | grep -o 'pid=[0-9]*' | head -1"],
                           capture_output=True, text=True).stdout
    pid, tick = found.strip().split("=")[1], os.sysconf("SC_CLK_TCK")

    def used() -> float:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return used


def main(port: str, rounds: int) -> None:
    client, cpu = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="secret"), server_cpu(port)
    full = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=96, temperature=0)
    stopped = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=96, temperature=0, stop=["4."])
    k = stopped.usage.completion_tokens
    print(f"unstopped answer {full.usage.completion_tokens} tokens; stopped at {k}: "
          f"{stopped.choices[0].message.content!r}")
    runs: dict[str, tuple[list[float], list[float]]] = {"stop": ([], []), "length": ([], [])}
    for _ in range(rounds):
        for name, options in (("stop", {"max_tokens": 96, "stop": ["4."]}), ("length", {"max_tokens": k})):
            wall, used = time.perf_counter(), cpu()
            answer = client.chat.completions.create(model="m", messages=MESSAGES, temperature=0, **options)
            runs[name][0].append(time.perf_counter() - wall)
            runs[name][1].append(cpu() - used)
            assert answer.usage.completion_tokens == k
    for name, (wall, used) in runs.items():
        print(f"{name}: wall median {statistics.median(wall):.3f} s, server CPU median {statistics.median(used):.3f} s")
    ratio = [statistics.median(runs["stop"][i]) / statistics.median(runs["length"][i]) for i in (0, 1)]
    print(f"ratio stop/length: wall {ratio[0]:.2f}, CPU {ratio[1]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 6)
