#!/bin/sh
# busybox udhcpc's hook for the guest's eth0: applies the lease passt's DHCP server gives
# (address, default route, MTU, DNS servers) and nothing else.
set -e
case "$1" in
deconfig)
  /bin/ip addr flush dev "$interface"
  /bin/ip link set "$interface" up
  ;;
bound | renew)
  /bin/ip link set "$interface" up
  [ -n "$mtu" ] && /bin/ip link set "$interface" mtu "$mtu"
  /bin/ip addr flush dev "$interface"
  /bin/ip addr add "$ip/${mask:-24}" dev "$interface"
  for r in $router; do
    /bin/ip route add default via "$r" dev "$interface"
    break
  done
  : >/etc/resolv.conf.new
  for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf.new; done
  mv /etc/resolv.conf.new /etc/resolv.conf
  ;;
esac
