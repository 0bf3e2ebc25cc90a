"""The sandbox: a local AWS IoT Core on a real mosquitto broker.

Run it with ``fleetdesk sandbox up`` (or :func:`fleetdesk.sandbox.child.start_sandbox` from
tests and scripts); find a running one with :meth:`fleetdesk.sandbox.info.SandboxInfo.load`.

Core (one process, asyncio):
    server          wiring, state dir, ports; the ROUTE_MODULES / SERVICE_MODULES contracts
    context         SandboxContext, ClientEvent, RegistryChange, EventHub
    ca              the CA: server cert, device certs, CSRs, CRL
    registry*       SQLite registry: things, types, groups, certificates, policies, attachments
    broker          the mosquitto child: config, log -> connection records, restarts
    policy          AWS IoT policy -> mosquitto dynamic-security ACLs, iot:Connect checks
    authz           keeps mosquitto's dynamic security + CRL in step with the registry
    control_plane   HTTPS server for boto3 ``iot``/``iot-data``; routes from botocore's model
    api_registry    the registry's control-plane operations
    cli, info, child
Services (shadows, jobs, presence, provisioning, WSS) plug in through ``server``'s contracts.
"""
