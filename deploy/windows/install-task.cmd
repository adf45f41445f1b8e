@echo off
rem Creates the task "ProdGuardian watch": prodguardian-watch.cmd every 5 minutes, as you, whether you are
rem signed in or not, with no window (schtasks asks for your password once). See docs\deploy.md.
schtasks /create /tn "ProdGuardian watch" /sc minute /mo 5 /tr "\"%LOCALAPPDATA%\prodguardian\prodguardian-watch.cmd\"" /ru "%USERDOMAIN%\%USERNAME%" /rp * /f
