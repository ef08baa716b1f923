-- Argo CD health check for telco.intent.dev/v1alpha1 ProductOffering (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready (a non-sellable offering is still Healthy; the message says why).
-- Install: resource.customizations.health.telco.intent.dev_ProductOffering in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  local why_not = st.sellableReason
  if type(why_not) ~= "string" or why_not == "" then
    why_not = says(st, "Ready", "see spec.lifecycleStatus and spec.validFor")
  end
  if is(st, "Ready", "True") then
    if st.sellable == false then
      return result("Healthy", "not sellable: " .. why_not)
    end
    return result("Healthy", says(st, "Ready", "sellable"))
  end
  if st.sellable == false and not is(st, "Ready", "Unknown") then
    return result("Healthy", "not sellable: " .. why_not)
  end
  if is(st, "Ready", "False") then
    return result("Degraded", says(st, "Ready", "not ready"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the controller"))
end

return run(obj)
