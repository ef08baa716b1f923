-- Argo CD health check for telco.intent.dev/v1alpha1 Invoice (Lua 5.1, as gopher-lua runs it).
-- Healthy once issued (TMF678 validated, sent, partiallyPaid, settled); Degraded when on hold.
-- Install: resource.customizations.health.telco.intent.dev_Invoice in argocd-cm (deploy/argocd/render.py).
-- #include _prelude.lua

local ISSUED = { validated = true, sent = true, partiallyPaid = true, settled = true }

local function run(o)
  local wait = pending(o)
  if wait ~= nil then
    return result("Progressing", wait)
  end
  local st = o.status
  local state = st.state
  if is(st, "Degraded", "True") then
    return result("Degraded", says(st, "Degraded", "degraded"))
  end
  if state == "onHold" then
    return result("Degraded", "on hold: " .. says(st, "Ready", "the bill cannot be issued"))
  end
  if state ~= nil and ISSUED[state] then
    local message = state
    if type(st.billNo) == "string" and st.billNo ~= "" then
      message = message .. " (bill " .. st.billNo .. ")"
    end
    if type(st.amountDue) == "table" and st.amountDue.value ~= nil and st.amountDue.unit ~= nil then
      message = message .. ", amount due " .. tostring(st.amountDue.value) .. " " .. tostring(st.amountDue.unit)
    end
    if st.overdue == true then
      message = message .. ", overdue"
    end
    return result("Healthy", message)
  end
  if state == "new" then
    return result("Progressing", "new: " .. says(st, "Ready", "the bill is being computed"))
  end
  return result("Progressing", "waiting for the controller to set status.state")
end

return run(obj)
