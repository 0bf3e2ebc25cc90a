"""Pages of the main window.

A page is a module here exposing ``create_page(ctx: fleetdesk_gui.context.AppContext) -> QWidget``.
List it in ``fleetdesk_gui.main_window.PAGES`` (one line: ``PageEntry("Title", "fleetdesk_gui.pages.module")``);
a listed module that does not exist yet is simply not shown. Pages are created the first
time they are selected. Put heavy imports (pyqtgraph, bleak) inside the module or factory,
stop timers and disconnect from the context in ``closeEvent`` (the window closes every
created page on exit). Use ``ctx.cloud_state_changed`` / ``ctx.profile_changed`` to follow
the cloud; ``ctx.sandbox_info()`` gives the running sandbox. Cross-thread work goes through
``fleetdesk_gui.bridge`` (post / submit / run_blocking), never directly.
"""
