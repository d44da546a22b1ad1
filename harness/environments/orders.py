"""The `orders` environment: an order-and-refund backend (customers, orders, refunds, messages) for agent tasks.

It enforces only what a real backend would (an order exists, a refund does not exceed what was paid);
the business policy (suites/agent-tasks/policy.md) is the model's to follow, and the grader sees any
breach in the final state.
"""

from __future__ import annotations

from typing import Any

from harness.environments import ToolEnvironment, ToolError, register


def _obj(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required}


_S = {"type": "string"}


@register("orders")
class OrdersBackend(ToolEnvironment):
    TOOLS = {
        "find_customer": ("Find a customer by email address.", _obj({"email": _S}, ["email"])),
        "list_orders": ("List a customer's orders (id, status, total).", _obj({"customer_id": _S}, ["customer_id"])),
        "get_order": ("Get an order's details.", _obj({"order_id": _S}, ["order_id"])),
        "cancel_order": (
            "Cancel an order that has not shipped yet.",
            _obj({"order_id": _S, "reason": _S}, ["order_id", "reason"]),
        ),
        "update_address": (
            "Change the shipping address of an order that has not shipped yet.",
            _obj({"order_id": _S, "address": _S}, ["order_id", "address"]),
        ),
        "refund_order": (
            "Refund an amount of a delivered order to the customer's payment method.",
            _obj({"order_id": _S, "amount": {"type": "number"}, "reason": _S}, ["order_id", "amount", "reason"]),
        ),
        "send_message": (
            "Send a message to a customer.",
            _obj({"customer_id": _S, "text": _S}, ["customer_id", "text"]),
        ),
    }

    def _order(self, order_id: str) -> dict:
        order = self.state["orders"].get(order_id)
        if order is None:
            raise ToolError(f"no order {order_id!r}")
        return order

    def find_customer(self, email: str) -> Any:
        for customer_id, customer in self.state["customers"].items():
            if customer["email"].lower() == str(email).strip().lower():
                return {"customer_id": customer_id, **customer}
        raise ToolError(f"no customer with email {email!r}")

    def list_orders(self, customer_id: str) -> Any:
        return [
            {"order_id": oid, "status": o["status"], "total": o["total"]}
            for oid, o in sorted(self.state["orders"].items())
            if o["customer_id"] == customer_id
        ]

    def get_order(self, order_id: str) -> Any:
        return {"order_id": order_id, **self._order(order_id)}

    def cancel_order(self, order_id: str, reason: str) -> Any:
        order = self._order(order_id)
        if order["status"] != "placed":
            raise ToolError(f"order {order_id} is {order['status']}: only placed orders can be cancelled")
        order["status"] = "cancelled"
        return {"order_id": order_id, "status": "cancelled"}

    def update_address(self, order_id: str, address: str) -> Any:
        order = self._order(order_id)
        if order["status"] != "placed":
            raise ToolError(f"order {order_id} is {order['status']}: the address can no longer change")
        order["address"] = address
        return {"order_id": order_id, "address": address}

    def refund_order(self, order_id: str, amount: float, reason: str) -> Any:
        order = self._order(order_id)
        if order["status"] not in ("delivered", "partially_refunded"):
            raise ToolError(f"order {order_id} is {order['status']}: only delivered orders can be refunded")
        if not isinstance(amount, (int, float)) or amount <= 0:
            raise ToolError("amount must be a positive number")
        left = round(order["total"] - order.get("refunded", 0.0), 2)
        if amount > left + 1e-9:
            raise ToolError(f"at most {left} can still be refunded on order {order_id}")
        order["refunded"] = round(order.get("refunded", 0.0) + float(amount), 2)
        order["status"] = "refunded" if abs(order["refunded"] - order["total"]) < 1e-9 else "partially_refunded"
        return {"order_id": order_id, "refunded": order["refunded"], "status": order["status"]}

    def send_message(self, customer_id: str, text: str) -> Any:
        if customer_id not in self.state["customers"]:
            raise ToolError(f"no customer {customer_id!r}")
        self.state.setdefault("messages", []).append({"customer_id": customer_id, "text": text})
        return {"sent": True}
