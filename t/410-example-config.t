# The example configuration of docs/nginx.conf passes `nginx -t` with the
# built module, its paths pointed at files the test makes.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Path qw(make_path);
use File::Spec;
use AcsTest::Entra;

my $root = File::Spec->rel2abs(($ENV{TEST_NGINX_SERVROOT} || 't/servroot')
                               . '/410-example-config');
make_path("$root/acs", "$root/logs", "$root/lib", "$root/modules");

my $module = (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '')[0]
    or BAIL_OUT('TEST_NGINX_LOAD_MODULES names no module');
$module = File::Spec->rel2abs($module);
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

sub spew { open my $fh, '>', $_[0] or die "$_[0]: $!"; print $fh $_[1]; close $fh }

spew("$root/acs/nh-send.conn", 'Endpoint=sb://contoso-ns.servicebus.windows.net/;'
     . "SharedAccessKeyName=send-only;SharedAccessKey=ZXhhbXBsZS1rZXktbm90LXJlYWw=\n");
spew("$root/acs/eg-secret", "example-secret-0123456789\n");
spew("$root/acs/access.key", "ZXhhbXBsZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk=\n");
my $keys = AcsTest::Entra::setup("$root/entra");
system('cp', $keys->{jwks}, "$root/acs/jwks.json") == 0 or die;

my $cert = (-r '/etc/ssl/certs/ssl-cert-snakeoil.pem') ? undef : 1;
if ($cert) {
    system("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test -days 1 "
           . "-keyout $root/key.pem -out $root/cert.pem 2>/dev/null") == 0 or die;
}

open my $in, '<', 'docs/nginx.conf' or die $!;
my $conf = do { local $/; <$in> };

$conf =~ s{load_module modules/ngx_http_acs_notify_module\.so;}{load_module $module;};
$conf =~ s{/etc/nginx/acs/}{$root/acs/}g;
$conf =~ s{/var/lib/nginx/acs-}{$root/lib/acs-}g;
$conf =~ s{/var/log/nginx/}{$root/logs/}g;
$conf =~ s{/run/nginx\.pid}{$root/logs/nginx.pid}g;
$conf =~ s{^user www-data;}{user root;}m;
if ($cert) {
    $conf =~ s{/etc/ssl/certs/ssl-cert-snakeoil\.pem}{$root/cert.pem};
    $conf =~ s{/etc/ssl/private/ssl-cert-snakeoil\.key}{$root/key.pem};
}
like($conf, qr/load_module \Q$module\E;/, 'the example loads the built module');
unlike($conf, qr{/etc/nginx/acs/}, 'every secret path points at a test file');

spew("$root/nginx.conf", $conf);
my $out = `$nginx -p $root/ -c $root/nginx.conf -t 2>&1`;
is($?, 0, 'nginx -t accepts docs/nginx.conf') or diag $out;
like($out, qr/test is successful/, 'nginx says the test is successful');
unlike($out, qr/\[(warn|emerg|alert)\]/, 'without a warning') or diag $out;

done_testing();
