"""Fakes of hardware tools, shipped so that users and tests can exercise emod without the hardware.

Import-light on purpose (standard library only: no numpy, no cv2).

:func:`write_fake_vcgencmd` writes a stand-in for the Raspberry Pi ``vcgencmd`` that follows
the real tool's ``pmic_read_adc`` output format; :data:`PI5_PMIC_READ_ADC` is a real capture.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

# `vcgencmd pmic_read_adc` on a Raspberry Pi 5 Model B Rev 1.0 (2 GB), Raspberry Pi OS bookworm, four busy cores,
# as recorded in a public test suite (ml-energy/zeus). Paired rails (V x I) sum to 7.24 W.
PI5_PMIC_READ_ADC = """\
 3V7_WL_SW_A current(0)=0.09368929A
   3V3_SYS_A current(1)=0.08783370A
   1V8_SYS_A current(2)=0.18054710A
  DDR_VDD2_A current(3)=0.22543980A
  DDR_VDDQ_A current(4)=0.06666720A
   1V1_SYS_A current(5)=0.17566740A
    0V8_SW_A current(6)=0.37670900A
  VDD_CORE_A current(7)=6.22421000A
   3V3_DAC_A current(17)=0.00006105A
   3V3_ADC_A current(18)=0.00036630A
   0V8_AON_A current(16)=0.00305250A
      HDMI_A current(22)=0.02417580A
 3V7_WL_SW_V volt(8)=3.69977600V
   3V3_SYS_V volt(9)=3.31003300V
   1V8_SYS_V volt(10)=1.80512600V
  DDR_VDD2_V volt(11)=1.10476100V
  DDR_VDDQ_V volt(12)=0.60146460V
   1V1_SYS_V volt(13)=1.11025500V
    0V8_SW_V volt(14)=0.80146440V
  VDD_CORE_V volt(15)=0.86173300V
   3V3_DAC_V volt(20)=3.31318300V
   3V3_ADC_V volt(21)=3.30677300V
   0V8_AON_V volt(19)=0.80029220V
      HDMI_V volt(23)=5.08664000V
     EXT5V_V volt(24)=5.09066000V
      BATT_V volt(25)=0.00000000V
"""

_SCRIPT = """\
#!{python} -S
# Fake `vcgencmd` written by emod.testing.write_fake_vcgencmd: follows the real tool's output format.
import sys, time
if sys.argv[1:] != ["pmic_read_adc"]:
    print("error=1 error_msg=\\"Command not registered\\"", file=sys.stderr)
    sys.exit(1)
time.sleep({sleep!r})
sys.stdout.write({output!r})
sys.stdout.flush()
sys.exit({exit_code!r})
"""


def write_fake_vcgencmd(dir: str | Path, output_text: str = PI5_PMIC_READ_ADC, exit_code: int = 0,
                        sleep: float = 0, name: str = "vcgencmd") -> Path:
    """Write an executable fake ``vcgencmd`` into DIR and return its path.

    Run as ``vcgencmd pmic_read_adc`` it waits SLEEP seconds, prints OUTPUT_TEXT exactly
    (default: the real capture :data:`PI5_PMIC_READ_ADC`) and exits with EXIT_CODE; any
    other command fails like the real tool does for an unknown command. It is one Python
    process (no children), so killing it on a timeout closes its output at once.
    """
    path = Path(dir) / name
    python = sys.executable if sys.executable and not any(c.isspace() for c in sys.executable) else "/usr/bin/env python3"
    path.write_text(_SCRIPT.format(python=python, sleep=float(sleep), output=output_text,
                                   exit_code=int(exit_code)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path
