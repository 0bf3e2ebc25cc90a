"""The app's cloud layer (no Qt): one asyncio API for the sandbox and real AWS IoT.

Entry point for the GUI and the CLI: :class:`fleetdesk.cloud.session.CloudSession`::

    session = CloudSession(profile)          # its backend: sandbox internal login; aws: WSS + SigV4
    session.conn.add_state_listener(cb)      # StateEvent(state=connecting|connected|reconnecting|failed|stopped, reason)
    await session.start()                    # connect, subscribe, ListThings, presence
    # refresh timer (1-5 Hz), never per message:
    for name in session.fleet.take_changes(): row = session.fleet.things[name].row()
    session.telemetry.add_listener(fn)       # fn(list[Sample]) once per stored batch
    session.shadows.add_listener(fn)         # fn(ShadowEvent) delta/documents/accepted/deleted
    await session.shadows.update(thing, desired={...}, version=v, base=doc)   # ShadowConflict on 409
    await session.rpc.call(thing, "Sys.GetInfo")
    session.logs.recent(thing); session.logs.add_listener(fn)
    ts, temp, hum = session.store.arrays(thing, since=t0)     # numpy, for charts
    await session.control.create_job(...); session.control.watch_executions(job_id)
    await fleetdesk.cloud.ota.create_ota_job(profile, session.control, job_id, image, "1.2.0", groups=[...])
    await session.stop()

Threading: every callback, listener and async iterator runs on the asyncio loop that called
``start()`` (with qasync, the Qt main thread); awscrt's native threads only enqueue. boto3
calls run in worker threads. Errors are :class:`fleetdesk.errors.CloudError` subclasses from
:mod:`fleetdesk.cloud.errors` (message + advice).

Modules: backend (the profile's cloud: the one place sandbox and AWS differ; boto3 clients,
MQTT login, device endpoint, OTA upload, is/wait online, status line), runtime (the app's
cloud side for the active profile), connection (MQTT5), settings (endpoint + credentials,
checked up front), topics, telemetry (store before ack), shadows, presence, rpc, logs,
control (boto3 registry/jobs, async), fleet_state (the live fleet model), provisioning
(claim flow), ota (firmware upload + job), session (profile -> all of it), identity (device
certs), cli.
"""
