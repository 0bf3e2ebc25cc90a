# SPDX-FileCopyrightText: 2018-2022 Espressif Systems (Shanghai) CO LTD
# SPDX-License-Identifier: Apache-2.0
#

from .security0 import *  # noqa: F403, F401
from .security1 import *  # noqa: F403, F401
from .security2 import *  # noqa: F403, F401
