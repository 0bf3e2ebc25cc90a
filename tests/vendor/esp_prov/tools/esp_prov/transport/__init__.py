# SPDX-FileCopyrightText: 2022 Espressif Systems (Shanghai) CO LTD
# SPDX-License-Identifier: Apache-2.0
#

from .transport_ble import *  # noqa: F403, F401
from .transport_console import *  # noqa: F403, F401
from .transport_http import *  # noqa: F403, F401
