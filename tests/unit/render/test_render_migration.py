"""The 1 -> 2 migration Job, and the Job that thaws phase 1 after an abandoned one."""

from __future__ import annotations

from render_helpers import containers, env_of

from phaseshift.render import RenderContext, render_migration_job, render_thaw_job


def test_migration_job_copies_sqlite_into_the_primary(make_plan) -> None:
    job = render_migration_job(make_plan(), RenderContext(db_password="pw"), "a1b2c3d4")
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "shop-migrate-sqlite-a1b2c3d4"
    assert job["spec"]["ttlSecondsAfterFinished"] == 86_400  # kept for its log
    assert job["spec"]["backoffLimit"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    migrate = containers(job)[0]
    assert migrate["command"][:4] == ["python", "-m", "sample_app", "migrate"]
    args = migrate["command"]
    assert args[args.index("--from") + 1] == "sqlite:////data/app.db"
    assert args[args.index("--to") + 1] == "$(TARGET_DATABASE_URL)"
    # It freezes the phase-1 app's writes before its final pass: the volume is writable.
    assert "--freeze-source" in args
    ref = env_of(migrate)["TARGET_DATABASE_URL"]["secretKeyRef"]
    assert ref == {"name": "shop-credentials", "key": "postgres-primary-url"}
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim["persistentVolumeClaim"] == {"claimName": "shop-sqlite", "readOnly": False}
    mount = next(m for m in migrate["volumeMounts"] if m["name"] == claim["name"])
    assert not mount.get("readOnly") and mount["mountPath"] == "/data"
    assert job["metadata"]["labels"]["phaseshift.dev/phase"] == "2"


def test_the_thaw_job_opens_the_sqlite_file_to_writes_and_cleans_up_after_itself(
    make_plan,
) -> None:
    job = render_thaw_job(make_plan(), RenderContext(db_password="pw"), "a1b2c3d4")
    assert job["metadata"]["name"] == "shop-thaw-sqlite-a1b2c3d4"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    (thaw,) = containers(job)
    assert thaw["command"] == [
        "python", "-m", "sample_app", "migrate", "--thaw", "--from", "sqlite:////data/app.db",
    ]  # fmt: skip
    assert "env" not in thaw or not thaw["env"]  # it needs no credentials
