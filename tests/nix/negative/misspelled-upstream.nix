# expect: services.openbao.settingz' does not exist
# Must fail: a misspelled option below services.openbao is rejected by the upstream module.
{ services.openbao.settingz.ui = true; }
