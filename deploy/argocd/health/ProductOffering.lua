-- Argo CD health check for telco.intent.dev/v1alpha1 ProductOffering (Lua 5.1, as gopher-lua runs it).
-- Healthy when Ready (a non-sellable offering is still Healthy; the message says why); Degraded when
-- Stalled (an unusable spec); else Progressing.
-- Install: resource.customizations.health.telco.intent.dev_ProductOffering in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local function run(o)
  local verdict = common(o)
  if verdict ~= nil then
    return verdict
  end
  local st = o.status
  if is(st, "Ready", "True") then
    if st.sellable == false then
      local why = st.sellableReason
      if type(why) ~= "string" or why == "" then
        why = says(st, "Sellable", "see spec.lifecycleStatus and spec.validFor")
      end
      return result("Healthy", "not sellable: " .. why)
    end
    return result("Healthy", says(st, "Ready", "sellable"))
  end
  return result("Progressing", says(st, "Ready", "waiting for the controller"))
end

return run(obj)
