<?php

// Written by hand, short array syntax, every comment style.
$CONFIG = [
	'overwrite.cli.url' => "https://[2001:db8::1]:8443/nextcloud/", # trailing slash goes
	'dbtype' => 'pgsql',
	'dbhost' => '[::1]:5433',
	/* the database
	   is on the same host */
	'dbname' => 'nc_prod',
	'dbuser' => 'oc_admin',
	'dbpassword' => 'p@ss:w/rd?&# "quoted"',
	'dbtableprefix' => 'nc_',
	'redis' => [
		'host' => '10.1.2.3',
		'port' => 6380,
		'user' => 'push',
		'password' => 'redis-secret-2',
		'dbindex' => 3,
	],
];
