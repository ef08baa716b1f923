-- Argo CD health check for telco.intent.dev/v1alpha1 NetworkService (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready (a dry run is Ready once its plan is computed: the plan is what it asks for) or
-- administratively disabled as spec.adminState asks; Degraded when Stalled; else Progressing.
-- Install: resource.customizations.health.telco.intent.dev_NetworkService in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  if is(st, "Ready", "True") then
    local message = says(st, "Ready", "configured and verified")
    if is(st, "DriftDetected", "True") then
      message = message .. "; drift reported: " .. says(st, "DriftDetected", "device differs from the intent")
    end
    return result("Healthy", message)
  end
  if st.state == "inactive" then
    return result("Healthy", "administratively disabled: " .. says(st, "Ready", "subinterfaces shut down"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the devices"))
end

return run(obj)
