"""Time the master's answers while another process holds the SQLite database locked."""
import os, signal, sqlite3, subprocess, sys, tempfile, threading, time, queue

rex = sys.argv[1]
plugins = sys.argv[2]
d = tempfile.mkdtemp()
open(os.path.join(d, "rex.yaml"), "w").write("project: rex.asynctask_demo\n")
env = dict(os.environ, REX_PLUGIN_PATH=plugins)
subprocess.run([rex, "asynctask-submit", "slow", '{"ms": 600000}'], cwd=d, env=env, check=True)
m = subprocess.Popen([rex, "asynctask-workers", '--set=asynctask_workers={"foo": null, "slow": "demo_sleep_worker"}'],
                     cwd=d, env=env, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True)
lines = queue.Queue()
threading.Thread(target=lambda: [lines.put((time.monotonic(), l.rstrip())) for l in m.stdout], daemon=True).start()
def wait(pred):
    while True:
        t, l = lines.get(timeout=60)
        if pred(l):
            return t, l
wait(lambda l: l.startswith("DEBUG:SleepWorker:Got payload"))
child = int(open(f"/proc/{m.pid}/task/{m.pid}/children").read().split()[0])
lock = sqlite3.connect(os.path.join(d, ".rex", "asynctask.db"), isolation_level=None)
lock.execute("BEGIN EXCLUSIVE")
t0 = time.monotonic(); os.kill(child, signal.SIGKILL)
t1, _ = wait(lambda l: "died; restarting" in l)
t2 = time.monotonic(); os.kill(m.pid, signal.SIGUSR1)
t3, status = wait(lambda l: l.startswith("INFO:AsyncTaskWorkerTask:Worker for queue slow:"))
t4 = time.monotonic(); os.kill(m.pid, signal.SIGTERM)
t5, _ = wait(lambda l: "Termination received" in l)
held = time.monotonic() - t0
lock.execute("ROLLBACK")
m.wait(timeout=60)
print(f"death handled {1000*(t1-t0):.1f} ms, SIGUSR1 status {1000*(t3-t2):.1f} ms, SIGTERM {1000*(t5-t4):.1f} ms, lock held {held*1000:.0f} ms; exit {m.returncode}")
print(status)
