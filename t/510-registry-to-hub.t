# tools/acs-registry-to-hub: the live registrations of a registry on disk
# copied into Notification Hubs installations through a node whose
# registry is hub=main.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep);
use AcsTest::Reg;
use AcsTest::Server;
use AcsTest::Dispatch;

my $t = AcsTest::Dispatch->new('510-disk');
my $nh = $t->nh;
my $L = $t->srv;                                # registry on disk
my $H = AcsTest::Server->new('510-hub');        # hub registry

my $loc = <<"SERVER";
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER

(my $disk = $t->hubs_conf) =~ s{(acs_notify_registry \S+);}{$1 ttl=1s;};
$L->write_conf(http => $disk, server => $loc);
(my $hub = $t->hubs_conf) =~ s{acs_notify_registry [^;]*;}
    {acs_notify_registry hub=main voip_hub=voip platforms=apns,apns-voip,fcmv1,browser;};
$H->write_conf(http => $hub, server => $loc);
$L->start;
$H->start;

my $BOB = '8:acs:bob';
my $PHONE = '4:+14255550123';
my $P256 = 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM';

is($L->register($BOB, 'iphone', platform => 'apns', handle => 'ab' x 32, ttlSeconds => 86400), 201,
   'a registration on disk');
is($L->register($BOB, 'voip', platform => 'apns-voip', handle => 'cd' x 32, ttlSeconds => 86400), 201,
   '... a VoIP one');
is($L->register($PHONE, 'web', platform => 'browser', handle => 'https://push.example/ep/1',
                p256dh => $P256, auth => 'tBHItJI5svbpez7KI4CCXg', ttlSeconds => 86400), 201,
   '... a browser one for a phone number');
is($L->register($BOB, 'old', platform => 'fcmv1', handle => 'old-token'), 201,
   '... and one that expires at once (ttl=1s)');
# tools/acs-curl signs as the tests do (tools/lib/AcsSign.pm)
my $curl = `tools/acs-curl $AcsTest::Reg::KEY GET http://127.0.0.1:${\ $L->port}/acs/users/8%3Aacs%3Abob/devices/iphone 2>&1`;
like($curl, qr{^HTTP/1\.1 200 }, 'tools/acs-curl: a signed GET is answered 200') or diag $curl;
like($curl, qr{"deviceId":"iphone"}, '... with the device');

# the node goes away before its sweep purges that one: the tool reads the
# directory alone, expired record included
$L->stop;
sleep 1.5;

my $KEYS = $L->root . '/../510-key';
open my $fh, '>', $KEYS or die $!;
print $fh "$AcsTest::Reg::KEY\n";
close $fh;

my $url = 'http://127.0.0.1:' . $H->port . '/acs';
my $registry = $t->dir . '/../registry';

my $out = `tools/acs-registry-to-hub $registry $url file:$KEYS 2>&1`;
is($? >> 8, 0, 'the copy succeeds') or diag $out;
like($out, qr/^3 copied, 1 expired skipped, 0 failed$/m, '... three live ones copied, the expired one not');

sub id { 'acs-' . substr(sha256_hex("$_[0]\n$_[1]"), 0, 40) }

my $i = $nh->installation('acs-push', id($BOB, 'iphone'));
is($i && $i->{pushChannel}, 'ab' x 32, 'the APNs device is an installation');
ok($nh->installation('acs-voip', id($BOB, 'voip')), 'the VoIP device is one on the VoIP hub');
$i = $nh->installation('acs-push', id($PHONE, 'web'));
is(ref $i && ref $i->{pushChannel} && $i->{pushChannel}{p256dh}, $P256, 'the browser device keeps its keys');
ok(!$nh->installation('acs-push', id($BOB, 'old')), 'the expired one was not copied');

my $path = '/acs/users/' . AcsTest::Server::uri_escape($PHONE) . '/devices/web';
my %h = map { /^([^:]+): (.*)$/ ? ($1 => $2) : () }
        split /\n/, AcsTest::Reg::signed_headers('GET', $path, '');
my ($st, undef, $b) = $H->request(GET => $path, '', \%h);
is($st, 200, 'read back through the hub node');
is((eval { decode_json($b) } // {})->{handle}, 'https://push.example/ep/1', '... the same device');

$out = `tools/acs-registry-to-hub $registry $url file:$KEYS 2>&1`;
like($out, qr/^3 copied/m, 'run again: the same three, no harm');

$out = `tools/acs-registry-to-hub $registry $url c2Vjb25kLWtleS1ub3QtcmVhbC0wMTIzNDU2Nzg5 2>&1`;
is($? >> 8, 1, 'with a wrong key: exit status 1');
like($out, qr/401/, '... each failure printed with its status');
like($out, qr/^0 copied, 1 expired skipped, 3 failed$/m, '... and counted');

$out = `tools/acs-registry-to-hub $registry $url file:$KEYS --dry-run 2>&1`;
like($out, qr{^PUT /acs/users/8%3Aacs%3Abob/devices/iphone \{"handle":"(ab)+","platform":"apns"\}$}m,
     '--dry-run prints the requests');

$H->stop;
unlike($L->whole_log . $H->whole_log, qr/\[(alert|crit)\]/, 'no [alert] or [crit]');

done_testing;
