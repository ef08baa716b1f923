-- Argo CD health check for telco.intent.dev/v1alpha1 NetworkService (Lua 5.1, as gopher-lua runs it).
-- Suspended when admin-disabled (TMF638 state inactive); then Degraded, then Ready decide.
-- Install: resource.customizations.health.telco.intent.dev_NetworkService in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  if st.state == "inactive" then
    return result("Suspended", "administratively disabled: " .. says(st, "Ready", "subinterfaces shut down"))
  end
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  if is(st, "Ready", "True") then
    local message = says(st, "Ready", "configured and verified")
    if is(st, "DriftDetected", "True") then
      message = message .. "; drift reported: " .. says(st, "DriftDetected", "device differs from the intent")
    end
    return result("Healthy", message)
  end
  -- A dry run is a steady state (only status.plan is computed): not progressing towards anything.
  if type(o.spec) == "table" and o.spec.dryRun == true and reason(st, "Ready") == "DryRun" then
    return result("Suspended", says(st, "Ready", "dry run"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the devices"))
end

return run(obj)
