# SPDX-FileCopyrightText: 2018-2022 Espressif Systems (Shanghai) CO LTD
# SPDX-License-Identifier: Apache-2.0
#

from .custom_prov import *  # noqa F403
from .wifi_ctrl import *  # noqa F403
from .wifi_prov import *  # noqa F403
from .wifi_scan import *  # noqa F403
