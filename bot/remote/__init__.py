"""Renders on other hosts: `[queue] backend = "arq"`.

    bot (Discord, the job store)                    reelbot worker (any host, many)
      enqueue a RenderOrder ──── arq queue in Redis ────► render it (pipeline.Renderer)
      read its events       ◄─── a Redis stream per run ── XADD each progress event
      watch its heartbeat   ◄─── a lease key per run ───── renew it while rendering
      /cancel: arq abort    ──────────────────────────────► the render is cancelled
                                  image slots: leases in Redis, one holder per slot

Both sides share `[storage] data_dir` (the artifact cache and the outputs) and the config file.
`orders.py` is what travels (the order, the stream's messages, the key names);
`image_lease.py` the shared image slot; `worker.py` the worker; `renders.py` the bot's side;
`runs.py` what the bot keeps of each run in its store (to read on where it left off).
"""
